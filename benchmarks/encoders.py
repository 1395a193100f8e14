#!/usr/bin/env python3
"""The catalog's two real encoders side by side (issue 17, item 3): all-MiniLM-L6-v2 (`minilm-l6`,
6 layers, 384 wide) against all-mpnet-base-v2 (`mpnet-base`, 12 layers, 768 wide; `make mpnet`), on
SST-2 and TREC, same rows, same specs, several seeds.

    .venv/bin/python benchmarks/encoders.py                       # the defaults below
    .venv/bin/python benchmarks/encoders.py --sets trec --recipes feature_extraction --seeds 0
    .venv/bin/python benchmarks/encoders.py --smoke

Per set, seed and encoder: `feature_extraction` on --train-rows rows drawn with the seed (a frozen
encoder: what an encoder's sentence vectors give as they are), and `fine_tuning` on --fine-tune-rows
of them (every weight trains: on this 2-core machine a 110M-parameter model's fine-tuning costs
minutes per few hundred rows, so it gets fewer rows; both encoders get the same ones). The specs are
the recipes' defaults with data.validation_fraction 0 (every row trains, the last epoch kept). Test:
up to --test-rows rows of the set's test split (SST-2's dev). Speed: texts per second of the saved
fine-tuned model over the test texts (`.probabilities`, batches of 64, one warm-up, median of 3),
every torch thread; training one torch thread.

`--speed` measures serving speed alone, on an otherwise idle machine: each encoder with a new
head (the compute of any model trained on it), over the 500 TREC test texts, batches of 64, every
torch thread, median of 5 calls in alternating order (section "speed").

Results: benchmarks/results/encoders.json (mean and sample sd over seeds).
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

from benchmarks.common import machine_info, merge_sections, output_path, sample  # noqa: E402
from benchmarks.public_sets import SETS, Rows  # noqa: E402
from benchmarks.quality import pm, spread  # noqa: E402
from benchmarks.training import quiet_transformers  # noqa: E402

ENCODERS = ("minilm-l6", "mpnet-base")


def base_path(encoder: str) -> Path:
    from app.catalog import Catalog
    from app.config import Settings

    return Catalog(Settings(packaged_models_dir=ROOT / "var" / "base-models")).get(encoder).path


def run(encoder: str, recipe: str, train: Rows, test: Rows, seed: int, epochs: int | None, folder: Path | None):
    from app.adaptation import LabeledTexts, TaskData, adapt
    from app.adaptation.job import save_result
    from app.schemas.recipes import expand

    def labeled(rows: Rows) -> LabeledTexts:
        return LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows])

    training = {"seed": seed, **({"epochs": epochs} if epochs else {})}
    spec = expand({"recipe": recipe, "data": {"train": "d", "validation_fraction": 0}, "training": training})
    started = time.monotonic()
    result = adapt(spec, TaskData(labeled(train), None, labeled(test)), base_path(encoder))
    seconds = time.monotonic() - started
    if folder is not None:
        save_result(result, spec, folder)
    return {"seed": seed, "test_accuracy": result.metrics["test"]["accuracy"], "train_seconds": seconds}


def speed(folder: Path, encoder: str, texts: list[str]) -> float:
    import torch

    from app.adaptation.ensemble import load_model

    torch.set_num_threads(os.cpu_count() or 1)
    model = load_model(folder, lambda _: base_path(encoder))
    model.probabilities(texts)  # warm-up
    times = []
    for _ in range(3):
        started = time.perf_counter()
        model.probabilities(texts)
        times.append(time.perf_counter() - started)
    torch.set_num_threads(1)
    return len(texts) / statistics.median(times)


def idle_speed(runs: int = 5) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from app.adaptation.inference import predict_proba
    from app.adaptation.model import TextClassifier, load_pretrained_encoder
    from app.schemas.spec import ModelConfig

    torch.set_num_threads(os.cpu_count() or 1)
    texts = [r["text"] for r in SETS["trec"]()[1]][:500]
    models = {}
    for encoder in ENCODERS:
        path = base_path(encoder)
        model = TextClassifier(load_pretrained_encoder(path), ModelConfig(), 6).eval()
        models[encoder] = (model, AutoTokenizer.from_pretrained(path))
        predict_proba(model, models[encoder][1], texts, 64)  # warm-up
    times: dict[str, list[float]] = {e: [] for e in ENCODERS}
    for repeat in range(runs):
        for encoder in ENCODERS if repeat % 2 == 0 else ENCODERS[::-1]:
            started = time.perf_counter()
            predict_proba(models[encoder][0], models[encoder][1], texts, 64)
            times[encoder].append(time.perf_counter() - started)
    rates = {e: len(texts) / statistics.median(t) for e, t in times.items()}
    return {
        "texts": len(texts),
        "threads": torch.get_num_threads(),
        "texts_per_second": {e: round(r, 1) for e, r in rates.items()},
        "mpnet_over_minilm_time": round(rates["minilm-l6"] / rates["mpnet-base"], 2),
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="sst2,trec")
    parser.add_argument("--recipes", default="feature_extraction,fine_tuning")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--fine-tune-rows", type=int, default=500)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="32 rows, 16 test rows, 1 epoch, results to the temp dir")
    parser.add_argument("--speed", action="store_true", help="only the idle-machine serving speed section")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    quiet_transformers()
    if args.speed:
        out = output_path("encoders.json", args.smoke, args.out)
        header = {"benchmark": "encoders", "machine": machine_info(), "encoders": list(ENCODERS)}
        document = merge_sections(out, header, {"speed": idle_speed()})
        print(document["sections"]["speed"])
        return
    torch.set_num_threads(1)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    out = output_path("encoders.json", args.smoke, args.out)
    header = {"benchmark": "encoders", "machine": machine_info(), "encoders": list(ENCODERS)}
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        train_pool, test_pool = SETS[name]()
        test = sample(test_pool, 16 if args.smoke else args.test_rows, 0)
        rows = {"feature_extraction": args.train_rows, "fine_tuning": args.fine_tune_rows}
        epochs = 1 if args.smoke else None
        section: dict[str, Any] = {"test_rows": len(test), "seeds": args.seeds, "results": {}}
        for recipe in recipes:
            count = 32 if args.smoke else rows.get(recipe, args.train_rows)
            for encoder in ENCODERS:
                measured = []
                for seed in args.seeds:
                    train = sample(train_pool, count, seed)
                    with tempfile.TemporaryDirectory() as folder:
                        saved = Path(folder) / "model" if recipe == "fine_tuning" else None
                        outcome = run(encoder, recipe, train, test, seed, epochs, saved)
                        if saved is not None:
                            outcome["texts_per_second"] = speed(saved, encoder, [r["text"] for r in test])
                    measured.append(outcome)
                    print(f"  {name} {recipe} {encoder} seed {seed}: {outcome}", flush=True)
                section["results"][f"{recipe} {encoder}"] = {
                    "recipe": recipe,
                    "encoder": encoder,
                    "train_rows": count,
                    "test_accuracy": spread([m["test_accuracy"] for m in measured]),
                    "train_seconds": spread([m["train_seconds"] for m in measured]),
                    **(
                        {"texts_per_second": spread([m["texts_per_second"] for m in measured])}
                        if recipe == "fine_tuning"
                        else {}
                    ),
                    "runs": measured,
                }
                document = merge_sections(out, header, {name: section})  # written after every row
    print(markdown(document))
    print(f"wrote {out}")


def markdown(document: dict[str, Any]) -> str:
    lines = [
        "| set | recipe | encoder | train rows | test accuracy | train s | texts/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, section in document["sections"].items():
        for row in section.get("results", {}).values():
            rate = pm(row["texts_per_second"], 1, 0) if "texts_per_second" in row else "—"
            lines.append(
                f"| {name} | {row['recipe']} | {row['encoder']} | {row['train_rows']} | {pm(row['test_accuracy'])} "
                f"| {pm(row['train_seconds'], 1, 0)} | {rate} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

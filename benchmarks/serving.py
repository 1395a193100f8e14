#!/usr/bin/env python3
"""Serving speed and memory: Thaw's API against a `transformers.pipeline` behind FastAPI, in one run.

    .venv/bin/python benchmarks/serving.py                         # 1 and 32 clients, 20 s each, 20 adapters
    .venv/bin/python benchmarks/serving.py --clients 1,8,32 --seconds 30 --adapters 50
    .venv/bin/python benchmarks/serving.py --smoke                 # seconds, to check the script works

One text per request, over HTTP, on the same machine:

  anchor  benchmarks/pipeline_server.py: `pipeline("text-classification")` over MiniLM with a 6-label
          head, a sync FastAPI handler, one uvicorn process; `POST /predict {"inputs": "text"}`
  Thaw    the real service in a temporary var dir (`thaw migrate`, `thaw serve`, `thaw worker`; SQLite
          and the embedded broker): a fine_tuning model trained through the API on TREC rows, then
          `POST /v1/models/{id}/predict {"inputs": ["text"]}`

Also, on Thaw: N tiny `adapters` models, to measure (a) the serve process's memory (VmRSS): idle,
after loading one full model, a second full model, then all N adapter models, and (b) mixed traffic,
every request to a random adapter model, against traffic to a single adapter model.

Every THAW_* variable of this process passes through to the service (THAW_MODEL_CACHE_BYTES,
THAW_SERVING_MAX_WAIT_MS, THAW_SERVING_QUANTIZE, THAW_SERVING_BACKEND, ...); on top of the service's
defaults this script lifts only the job-submission limit and sizes the model cache for every model it
trains: predictions meet the default per-key limit, and every 429 shows in a row's `statuses`. The worker is stopped
once the models are trained, so that its broker polling takes no CPU from the measurements.

The load generator runs in a process of its own (this script with --load-test): one asyncio loop, an
httpx client, N concurrent clients each sending its next request as soon as its last one is answered.
TREC test questions, shuffled with a fixed seed. Each measurement is `--warmup` seconds (not counted),
then `--seconds` counted: a request counts when it started and finished inside the counted window.
Measurements alternate between the two servers at each concurrency level. Every process this script
starts runs in a process group of its own, and every group is killed on exit, on error or on a signal.
Results: benchmarks/results/serving.json (--smoke writes to the temp directory instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.common import machine_info, output_path, sample, trec_test_rows, trec_train_rows  # noqa: E402
from benchmarks.performance_table import serving_markdown  # noqa: E402

GiB = 1024**3


# ---- processes -------------------------------------------------------------------------------------


class Processes:
    """Every child process, each in its own process group (uvicorn threads, Celery's pool children),
    so that stopping one stops all it started. Used as a context manager: all are stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}  # pid -> its stdout and stderr

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        path = self.log_dir / f"{name}.log"
        with path.open("w") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.logs[process.pid] = path
        self.running.append(process)
        return process

    def log_tail(self, process: subprocess.Popen, characters: int = 3000) -> str:
        return self.logs[process.pid].read_text()[-characters:]

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        else:  # it exited, but what it started may not have
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if process in self.running:
            self.running.remove(process)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_exc: object) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def exit_on_sigterm() -> None:
    """A SIGTERM unwinds like Ctrl-C does, so that the finally blocks stop every server."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, processes: Processes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server at {url} exited:\n{processes.log_tail(process)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not come up:\n{processes.log_tail(process)}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"no VmRSS for process {pid}")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) the threads of a process have used, summed by thread name."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: float) -> dict[str, float]:
    """Server CPU milliseconds per request over a measurement, warm-up included (so slightly high),
    OpenMP's spin-waiting included. (Per thread it cannot be split further: OpenMP's worker threads
    take the name of the thread that started them.)"""
    total = sum(after.get(name, 0.0) - before.get(name, 0.0) for name in after)
    return {"server_cpu_ms_per_request": round(1000 * total / requests, 3)}


# ---- the anchor ------------------------------------------------------------------------------------


def start_anchor(processes: Processes) -> tuple[str, int]:
    port = free_port()
    command = [sys.executable, str(ROOT / "benchmarks" / "pipeline_server.py"), "--port", str(port)]
    process = processes.start("anchor", command)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, processes)
    return url, process.pid


# ---- Thaw ------------------------------------------------------------------------------------------


def thaw_command() -> list[str]:
    script = Path(sys.executable).with_name("thaw")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def thaw_env(var_dir: Path, port: int, models: int) -> tuple[dict[str, str], dict[str, str]]:
    """(the service's environment, its THAW_* settings for the record). Precedence: this script's
    defaults, then the THAW_* variables it was run with, then where this instance lives."""
    defaults = {
        "THAW_JOB_SUBMISSIONS_PER_MINUTE": "0",  # it trains every adapter model through the API
        "THAW_MODEL_CACHE_SIZE": str(models + 8),
        "THAW_MODEL_CACHE_BYTES": str(64 * GiB),  # a budget, not an allocation: nothing may be unloaded
    }
    passed = {k: v for k, v in os.environ.items() if k.startswith("THAW_")}
    location = {
        "THAW_VAR_DIR": str(var_dir),
        "THAW_ARTIFACTS_DIR": str(var_dir / "artifacts"),
        "THAW_HOST": "127.0.0.1",
        "THAW_PORT": str(port),
    }
    settings = {**defaults, **passed, **location}
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAW_")}
    recorded = {k: v for k, v in sorted(settings.items()) if k not in location}
    return {**env, **settings}, recorded


class ThawService:
    """The real service, driven over HTTP and through its CLI, as a user would."""

    def __init__(self, processes: Processes, var_dir: Path, models: int) -> None:
        self.processes = processes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.settings = thaw_env(var_dir, self.port, models)
        self.api: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.headers: dict[str, str] = {}

    def cli(self, *args: str) -> str:
        done = subprocess.run([*thaw_command(), *args], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"thaw {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout.strip()

    def start(self) -> None:
        self.cli("migrate")
        self.headers = {"Authorization": f"Bearer {self.cli('keys', 'create', '--tenant', 'benchmark')}"}
        # `thaw serve` execs uvicorn in place, so this pid is the serving process whose memory we read.
        self.api = self.processes.start("thaw-serve", [*thaw_command(), "serve"], self.env)
        self.worker = self.processes.start("thaw-worker", [*thaw_command(), "worker"], self.env)
        wait_healthy(self.url, self.api, self.processes)
        self.wait_worker_ready()

    def wait_worker_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.worker_log(100_000):
                return
            if self.worker.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"the worker did not start:\n{self.worker_log()}")

    def worker_log(self, characters: int = 3000) -> str:
        return self.processes.log_tail(self.worker, characters) if self.worker is not None else ""

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.processes.stop(self.worker)
            self.worker = None

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = httpx.request(method, f"{self.url}{path}", headers=self.headers, timeout=120, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json()

    def upload(self, rows: list[dict[str, str]], name: str) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
        files = {"file": (f"{name}.csv", buffer.getvalue().encode(), "text/csv")}
        return self.request("POST", "/v1/datasets", files=files, data={"name": name})["id"]

    def submit(self, spec: dict[str, Any]) -> str:
        return self.request("POST", "/v1/jobs", json=spec)["id"]

    def wait_models(self, job_ids: list[str], timeout: float) -> list[str]:
        """The model ids of these jobs, in order, once every one has succeeded."""
        deadline = time.monotonic() + timeout
        pending, models = set(job_ids), {}
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} jobs unfinished after {timeout:.0f}s:\n{self.worker_log()}")
            for job_id in sorted(pending):
                job = self.request("GET", f"/v1/jobs/{job_id}")
                if job["status"] == "succeeded":
                    models[job_id] = job["model_id"]
                    pending.discard(job_id)
                elif job["status"] in {"failed", "cancelled"}:
                    raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}\n{self.worker_log()}")
            time.sleep(0.5)
        return [models[job_id] for job_id in job_ids]

    def predict(self, model_id: str, text: str) -> None:
        self.request("POST", f"/v1/models/{model_id}/predict", json={"inputs": [text]})

    def rss(self) -> int:
        time.sleep(0.5)  # let a just-answered request's thread settle
        return rss_bytes(self.api.pid)


def train_models(service: ThawService, args: argparse.Namespace, train_rows: list[dict[str, str]]) -> dict:
    """Two full fine_tuning models (the second measures a full model's memory with torch already
    loaded) and N adapter models; every row trains (no validation), 1 epoch."""
    full_data = service.upload(sample(train_rows, args.train_rows, 0), "trec-full")
    adapter_data = service.upload(sample(train_rows, args.adapter_rows, 1), "trec-adapters")

    def spec(recipe: str, dataset: str, seed: int) -> dict[str, Any]:
        return {
            "recipe": recipe,
            "data": {"train": dataset, "validation_fraction": 0},
            "training": {"epochs": 1, "seed": seed},
        }

    full_jobs = [service.submit(spec("fine_tuning", full_data, seed)) for seed in (0, 1)]
    adapter_jobs = [service.submit(spec("adapters", adapter_data, seed)) for seed in range(args.adapters)]
    started = time.monotonic()
    timeout = 600 + 60 * args.adapters
    full, adapters = service.wait_models(full_jobs, timeout), service.wait_models(adapter_jobs, timeout)
    print(f"trained 2 full and {len(adapters)} adapter models in {time.monotonic() - started:.0f}s", flush=True)
    return {"full": full, "adapters": adapters}


def measure_memory(service: ThawService, models: dict[str, list[str]], text: str) -> dict[str, int]:
    """The serve process's VmRSS as models load, one predict each, before any load test."""
    idle = service.rss()
    service.predict(models["full"][0], text)
    after_full = service.rss()
    service.predict(models["full"][1], text)
    after_second_full = service.rss()
    for model_id in models["adapters"]:
        service.predict(model_id, text)
    after_adapters = service.rss()
    memory = {
        "adapters": len(models["adapters"]),
        "rss_idle_bytes": idle,
        "rss_after_full_bytes": after_full,
        "rss_after_second_full_bytes": after_second_full,
        "rss_after_adapters_bytes": after_adapters,
        "first_full_model_bytes": after_full - idle,  # includes importing torch and its runtime
        "full_model_bytes": after_second_full - after_full,
        "adapters_bytes": after_adapters - after_second_full,
    }
    print(f"memory: {json.dumps(memory)}", flush=True)
    return memory


# ---- the load generator ----------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def generate_load(config: dict[str, Any]) -> dict[str, Any]:
    texts = json.loads(Path(config["texts"]).read_text())
    next_text = itertools.cycle(texts).__next__  # one shared order: the loop is single-threaded
    clients, wrap = config["clients"], config["wrap_in_list"]
    rng = random.Random(config["seed"])
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=config["url"], headers=config["headers"], limits=limits, timeout=120) as http:
        counted_from = time.perf_counter() + config["warmup"]
        counted_until = counted_from + config["seconds"]

        async def client() -> None:
            while (began := time.perf_counter()) < counted_until:
                text = next_text()
                path = rng.choice(config["paths"])
                try:
                    response = await http.post(path, json={"inputs": [text] if wrap else text})
                    status = str(response.status_code)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                ended = time.perf_counter()
                if began >= counted_from and ended <= counted_until:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == "200":
                        latencies.append(ended - began)

        await asyncio.gather(*(client() for _ in range(clients)))
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": sum(count for status, count in statuses.items() if status != "200"),
        "statuses": statuses,
        "requests_per_second": round(len(latencies) / config["seconds"], 2),
        "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
        "p95_ms": round(1000 * percentile(latencies, 0.95), 2) if latencies else None,
    }


def run_load_test(config: dict[str, Any], scratch: Path, processes: Processes) -> dict[str, Any]:
    """One measurement, by a load generator in its own process (so it shares no interpreter with a server)."""
    config_path = scratch / "load-test.json"
    config_path.write_text(json.dumps(config))
    process = processes.start("load-generator", [sys.executable, __file__, "--load-test", str(config_path)])
    try:
        process.wait(timeout=config["warmup"] + config["seconds"] + 180)
    finally:
        processes.stop(process)
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{processes.log_tail(process)}")
    return json.loads(processes.log_tail(process, 100_000).strip().splitlines()[-1])


# ---- the run ---------------------------------------------------------------------------------------


def measurement(
    server: str, scenario: str, url: str, paths: list[str], headers: dict, clients: int, args, texts_path: Path
) -> dict[str, Any]:
    return {
        "server": server,
        "scenario": scenario,
        "url": url,
        "paths": paths,
        "headers": headers,
        "wrap_in_list": server == "thaw",
        "clients": clients,
        "warmup": args.warmup,
        "seconds": args.seconds,
        "texts": str(texts_path),
        "seed": clients,
    }


def load_tests(args, scratch: Path, processes: Processes, anchor: tuple[str, int], service: ThawService, models: dict):
    anchor_url, anchor_pid = anchor
    texts = [r["text"] for r in trec_test_rows()]
    random.Random(0).shuffle(texts)
    texts_path = scratch / "texts.json"
    texts_path.write_text(json.dumps(texts))
    full_path = [f"/v1/models/{models['full'][0]}/predict"]
    configs = []
    for index, clients in enumerate(args.clients):
        pair = [
            measurement("anchor", "pipeline", anchor_url, ["/predict"], {}, clients, args, texts_path),
            measurement("thaw", "full model", service.url, full_path, service.headers, clients, args, texts_path),
        ]
        configs += pair if index % 2 == 0 else pair[::-1]  # alternate which server goes first
    adapter_paths = [f"/v1/models/{model_id}/predict" for model_id in models["adapters"]]
    most = max(args.clients)
    for scenario, paths in (("one adapter model", adapter_paths[:1]), ("mixed adapter models", adapter_paths)):
        configs.append(measurement("thaw", scenario, service.url, paths, service.headers, most, args, texts_path))
    rows = []
    for config in configs:
        pid = anchor_pid if config["server"] == "anchor" else service.api.pid
        before = thread_cpu_seconds(pid)
        result = run_load_test(config, scratch, processes)
        requests = result["requests_per_second"] * (config["warmup"] + config["seconds"])
        cpu = cpu_per_request(before, thread_cpu_seconds(pid), max(requests, 1.0))
        row = {"server": config["server"], "scenario": config["scenario"], **result, **cpu}
        rows.append(row)
        print(
            f"{row['server']:6} {row['scenario']:22} {row['clients']:3} clients: "
            f"{row['requests_per_second']:8.1f} req/s"
            f"  p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms  errors {row['errors']} {row['statuses']}",
            flush=True,
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    exit_on_sigterm()
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="thaw-serving-") as scratch_dir, Processes(Path(scratch_dir)) as processes:
        scratch = Path(scratch_dir)
        try:
            service = ThawService(processes, scratch / "var", models=args.adapters + 2)
            service.start()
            models = train_models(service, args, trec_train_rows())
            service.stop_worker()
            memory = measure_memory(service, models, trec_test_rows()[0]["text"])
            anchor = start_anchor(processes)
            rows = load_tests(args, scratch, processes, anchor, service, models)
        except BaseException:
            for process in processes.running:  # the servers' own words, before their logs are deleted
                print(f"--- {processes.logs[process.pid].name}:\n{processes.log_tail(process)}", file=sys.stderr)
            raise
    return {
        "benchmark": "serving",
        "base_model": "all-MiniLM-L6-v2",
        "machine": machine,
        "settings": {
            "clients": args.clients,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "adapters": args.adapters,
            "train_rows": args.train_rows,
            "adapter_rows": args.adapter_rows,
            "thaw_env": service.settings,
            "smoke": args.smoke,
        },
        "rows": rows,
        "memory": memory,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,32", help="concurrency levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=20, help="counted seconds per measurement")
    parser.add_argument("--warmup", type=float, default=5, help="uncounted seconds before each measurement")
    parser.add_argument("--adapters", type=int, default=20, help="adapter models to train and serve")
    parser.add_argument("--train-rows", type=int, default=300, help="TREC rows of the full model's job")
    parser.add_argument("--adapter-rows", type=int, default=64, help="TREC rows of each adapter job")
    parser.add_argument("--out", type=Path, default=None, help="result file (default: benchmarks/results/...)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--load-test", type=Path, help=argparse.SUPPRESS)  # the load generator's own process
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.adapters, args.train_rows, args.adapter_rows = 1.0, 0.5, 2, 64, 32
    args.clients = [int(c) for c in args.clients.split(",")]
    return args


def main() -> None:
    args = parse_args()
    if args.load_test:
        print(json.dumps(asyncio.run(generate_load(json.loads(args.load_test.read_text())))))
        return
    document = run(args)
    out = output_path("serving.json", args.smoke, args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {out}\n")
    print(serving_markdown(document))


if __name__ == "__main__":
    main()

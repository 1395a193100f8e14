"""Jobs routed by what they need, with real worker processes on different queues of one broker.

No GPU exists on the machines these tests run on. A "gpu" worker here is a real `thaw worker --queues
gpu` whose jobs train on the CPU (torch sees no CUDA device, whatever CUDA_VISIBLE_DEVICES says), so
what is checked is what is real without one: which worker takes which job, that a job for a GPU class
nobody serves stays queued, and that `--gpus 0,1` runs two pool processes, each pinned to its own GPU
through CUDA_VISIBLE_DEVICES. That a pinned process then trains on that device needs a GPU machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from tests.conftest import build_settings, fresh_database
from tests.e2e.conftest import FINISHED
from tests.utils.data import as_csv, sentiment
from tests.utils.services import WorkerProcess, auth, new_key

pytestmark = pytest.mark.slow

SPEC = {"base_model": "tiny-bert", "training": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}


class Cluster:
    """An in-process API and named workers, each consuming the queues of its own routes."""

    def __init__(self, settings: Settings, client: TestClient, workers: dict[str, WorkerProcess]) -> None:
        self.settings, self.client, self.workers = settings, client, workers
        self.headers = auth(new_key(settings))
        train = self.client.post(
            "/v1/datasets", headers=self.headers, files={"file": ("t.csv", as_csv(sentiment(120, seed=4)))}
        )
        self.train = train.json()["id"]

    def submit(self, compute: dict, epochs: int = 1) -> str:
        spec = {**SPEC, "data": {"train": self.train}, "compute": compute}
        spec["training"] = {**SPEC["training"], "epochs": epochs}
        response = self.client.post("/v1/jobs", headers=self.headers, json=spec)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.client.get(f"/v1/jobs/{job_id}", headers=self.headers).json()

    def wait(self, job_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in FINISHED:
                return job
            time.sleep(0.2)
        logs = "\n".join(f"--- {name}\n{w.log_path.read_text()[-2000:]}" for name, w in self.workers.items())
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s\n{logs}")

    def started(self, job_id: str) -> dict:
        """The data of the job's `started` event: attempt, worker, queue, cuda_visible_devices."""
        events = self.client.get(f"/v1/jobs/{job_id}/events", headers=self.headers).json()["items"]
        [started] = [e["data"] for e in events if e["kind"] == "started"]
        return started


WORKERS = {
    "cpu": {"queues": "cpu"},
    "gpu": {"queues": "gpu"},
    # A GPU class whose one worker holds GPUs 0 and 1, one pool process pinned to each.
    "t4": {"queues": "t4", "gpus": "0,1"},
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cluster(request, tmp_path_factory, tiny_model_dir: Path) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp(f"queues-{request.param}")
    models = {"tiny-bert": tiny_model_dir}
    if request.param == "sqlite":
        yield from run_cluster(build_settings(root / "var", models))
    else:
        with fresh_database(request.getfixturevalue("postgres_server")) as url:
            yield from run_cluster(build_settings(root / "var", models, url, request.getfixturevalue("redis_server")))


def run_cluster(settings: Settings) -> Iterator[Cluster]:
    # a100 is a class the service offers but no worker here serves: its jobs wait.
    settings = settings.model_copy(update={"gpu_classes": ["a100", "t4"]})
    workers: dict[str, WorkerProcess] = {}
    try:
        for name, flags in WORKERS.items():
            workers[name] = WorkerProcess(settings, name=f"{name}@%h", **flags)
        for worker in workers.values():
            worker.wait_ready()
        with TestClient(create_app(settings)) as client:
            yield Cluster(settings, client, workers)
    finally:
        for worker in workers.values():
            worker.stop()


def test_each_worker_takes_only_the_jobs_of_its_routes(cluster: Cluster):
    queue = cluster.settings.queue
    on_cpu = [cluster.submit({}) for _ in range(2)]
    on_gpu = [cluster.submit({"gpus": 1}) for _ in range(2)]
    waiting_a100 = cluster.submit({"gpus": 1, "gpu_class": "a100"})
    waiting_two_gpus = cluster.submit({"gpus": 2})  # no worker's processes hold two GPUs
    for job_id in on_cpu + on_gpu:
        job = cluster.wait(job_id)
        assert job["status"] == "succeeded", job["error"]
    for job_id in on_cpu:
        started = cluster.started(job_id)
        assert started["worker"].startswith("cpu@") and started["queue"] == queue
        # Not pinned (this worker lists no GPUs): it sees what its environment sees.
        assert started["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES")
    for job_id in on_gpu:
        started = cluster.started(job_id)
        assert started["worker"].startswith("gpu@") and started["queue"] == f"{queue}.gpu"
    for job_id in (waiting_a100, waiting_two_gpus):
        job = cluster.job(job_id)
        assert job["status"] == "queued" and job["started_at"] is None
        cancelled = cluster.client.post(f"/v1/jobs/{job_id}/cancel", headers=cluster.headers).json()
        assert cancelled["status"] == "cancelled"


def test_a_worker_with_two_gpus_runs_one_process_pinned_to_each(cluster: Cluster):
    # Both jobs are queued at once and train for a few seconds: each pool process takes one, so both
    # processes' pinning shows. Nothing trains on a GPU here (there is none); only the pinning is real.
    jobs = [cluster.submit({"gpus": 1, "gpu_class": "t4"}, epochs=4) for _ in range(2)]
    for job_id in jobs:
        job = cluster.wait(job_id)
        assert job["status"] == "succeeded", job["error"]
    started = [cluster.started(job_id) for job_id in jobs]
    assert {s["worker"].split("@")[0] for s in started} == {"t4"}
    assert {s["queue"] for s in started} == {f"{cluster.settings.queue}.t4"}
    assert sorted(s["cuda_visible_devices"] for s in started) == ["0", "1"]
    banner = cluster.workers["t4"].log_path.read_text()
    assert "training process(es), on GPUs 0 | 1" in banner and "concurrency: 2 (prefork)" in banner

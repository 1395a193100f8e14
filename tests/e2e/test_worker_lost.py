"""Faults with real processes: a worker killed with SIGKILL mid-training, a pause that frees the
worker, an API process killed and restarted. The job goes on from its checkpoint and ends where an
unbroken run ends, with one model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.storage.artifacts import LocalArtifactStore
from tests.e2e.conftest import Service, backend_service
from tests.utils.data import as_csv, sentiment
from tests.utils.services import ROOT, WorkerProcess, free_port, healthy, service_env, wait_for

pytestmark = pytest.mark.slow

SPEC = {"base_model": "tiny-bert", "training": {"epochs": 5, "batch_size": 8, "learning_rate": 1e-3}}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request, tmp_path_factory, tiny_model_dir: Path) -> Iterator[Service]:
    # Beat and sweep fast, checkpoint often, so that a lost worker is noticed in seconds.
    yield from backend_service(
        request,
        tmp_path_factory.mktemp(f"faults-{request.param}"),
        {"tiny-bert": tiny_model_dir},
        checkpoint_every_steps=10,
        heartbeat_interval_seconds=0.5,
        heartbeat_timeout_seconds=4.0,
        sweep_interval_seconds=0.5,
    )


def submit(service: Service, epochs: int = 5) -> str:
    train = service.client.post(
        "/v1/datasets", headers=service.headers, files={"file": ("t.csv", as_csv(sentiment(200, seed=3)))}
    ).json()["id"]
    spec = {**SPEC, "data": {"train": train}, "training": {**SPEC["training"], "epochs": epochs}}
    response = service.client.post("/v1/jobs", headers=service.headers, json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def events(service: Service, job_id: str) -> list[dict]:
    return service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"]


@pytest.fixture(scope="module")
def unbroken(service: Service) -> dict:
    job = service.wait(submit(service))
    assert job["status"] == "succeeded", job["error"]
    return job


def test_a_worker_killed_mid_training_is_replaced_and_the_job_goes_on_from_its_checkpoint(service, unbroken):
    job_id = submit(service)
    service.wait_for_step(job_id, 25)  # past the checkpoints at steps 10 and 20 (of 5 x 23)
    os.killpg(service.worker.process.pid, signal.SIGKILL)  # the whole worker, as when a node dies
    service.worker.process.wait()
    service.worker = WorkerProcess(service.settings)
    service.worker.wait_ready()
    job = service.wait(job_id, timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    history = events(service, job_id)
    kinds = [e["kind"] for e in history]
    assert kinds.count("requeued") == 1 and kinds.count("resumed") == 1 and kinds[-1] == "succeeded"
    resumed = next(e for e in history if e["kind"] == "resumed")["data"]
    # A checkpoint every 10 steps and at each epoch's end (23 steps), the last at or after step 20.
    assert resumed["step"] >= 20 and (resumed["step"] % 10 == 0 or resumed["step"] % 23 == 0)
    assert job["metrics"]["resumed_from_step"] == resumed["step"]
    # The same result as the unbroken run of the same spec: every epoch's validation metrics.
    assert job["metrics"]["history"] == unbroken["metrics"]["history"]
    assert service.models_of(job_id) == [job["model_id"]]
    checkpoint = LocalArtifactStore(service.settings.resolved_artifacts_dir).checkpoint_dir(job_id)
    wait_for(lambda: not checkpoint.exists(), timeout=30)  # removed just after the job's end is committed


def test_pause_frees_the_worker_and_resume_goes_on_from_the_pause(service, unbroken):
    job_id = submit(service)
    service.wait_for_step(job_id, 15)
    assert service.client.post(f"/v1/jobs/{job_id}/pause", headers=service.headers).status_code == 200
    paused = service.wait(job_id, until={"paused", "succeeded"}, timeout=60)
    assert paused["status"] == "paused" and paused["model_id"] is None
    stopped_at = paused["progress"]["step"]
    checkpoint = LocalArtifactStore(service.settings.resolved_artifacts_dir).checkpoint_dir(job_id)
    assert (checkpoint / "phases" / "main" / "LATEST").exists()  # the choosing run's (refit.py)
    # The worker is free: another job runs to the end while this one is paused.
    other = service.wait(submit(service, epochs=1))
    assert other["status"] == "succeeded"
    assert service.client.post(f"/v1/jobs/{job_id}/resume", headers=service.headers).status_code == 200
    job = service.wait(job_id, timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and job["metrics"]["resumed_from_step"] >= stopped_at
    assert job["metrics"]["history"] == unbroken["metrics"]["history"]
    assert service.models_of(job_id) == [job["model_id"]]
    # The worker removes the checkpoints just after it commits the job's end: moments later, not before.
    wait_for(lambda: not checkpoint.exists(), timeout=30)


def test_an_api_killed_and_restarted_loses_nothing(service, tmp_path):
    """A real API process (`thaw serve`) killed with SIGKILL while its job trains: the job goes on in
    the worker, and the restarted API serves its state and its model."""
    port = free_port()
    env = {**service_env(service.settings), "THAW_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        command = [sys.executable, "-m", "app.cli", "serve"]
        api = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: healthy(url))
        return api

    api = start()
    try:
        train = httpx.post(
            f"{url}/v1/datasets", headers=service.headers, files={"file": ("t.csv", as_csv(sentiment(200, seed=3)))}
        ).json()["id"]
        spec = {**SPEC, "data": {"train": train}}
        job_id = httpx.post(f"{url}/v1/jobs", headers=service.headers, json=spec).json()["id"]
        service.wait_for_step(job_id, 5)
        api.kill()
        api.wait()
        api = start()

        def ended() -> dict | None:
            job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=service.headers).json()
            return job if job["status"] in ("succeeded", "failed") else None

        job = wait_for(ended, timeout=180)
        assert job["status"] == "succeeded" and job["attempts"] == 1
        body = {"inputs": ["good"]}
        # The restarted API's first prediction imports torch and loads the model: seconds on a slow machine.
        predict = f"{url}/v1/models/{job['model_id']}/predict"
        predicted = httpx.post(predict, headers=service.headers, json=body, timeout=120)
        assert predicted.status_code == 200
    finally:
        api.kill()
        api.wait()


def test_a_worker_sent_sigterm_gives_back_its_job_and_the_next_goes_on_from_there(service, unbroken):
    """SIGTERM to the worker's main process alone, as `docker stop` and Kubernetes send it: the job
    checkpoints at once and is queued again, the worker exits, and the next one ends the job where an
    unbroken run ends."""
    job_id = submit(service)
    service.wait_for_step(job_id, 15)  # mid-epoch 1: no checkpoint is due before step 20
    os.kill(service.worker.process.pid, signal.SIGTERM)
    service.worker.process.wait(timeout=30)  # Celery alone would wait for the whole job
    queued = service.client.get(f"/v1/jobs/{job_id}", headers=service.headers).json()
    assert queued["status"] == "queued" and queued["attempts"] == 1
    history = events(service, job_id)
    given_back = history[-1]
    assert given_back["kind"] == "requeued" and "the worker is stopping" in given_back["message"]
    stopped_at = int(given_back["message"].split("paused at step ")[1].split()[0])
    service.worker = WorkerProcess(service.settings)
    service.worker.wait_ready()
    job = service.wait(job_id, timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and job["metrics"]["resumed_from_step"] == stopped_at
    assert job["metrics"]["history"] == unbroken["metrics"]["history"]
    assert service.models_of(job_id) == [job["model_id"]]

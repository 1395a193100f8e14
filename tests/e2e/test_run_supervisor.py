"""`thaw run` (what `make run` starts): API and worker up, a killed worker comes back, Ctrl-C stops
all; SIGTERM (what docker stop, systemd and Kubernetes send) too, and the job it was training goes on
from its checkpoint when the service is back."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import build_settings
from tests.utils.data import as_csv, sentiment
from tests.utils.services import ROOT, auth, free_port, healthy, new_key, service_env, wait_for

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def worker_pid(supervisor: int) -> int | None:
    for pid in children(supervisor):
        if b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    return None


def start_run(env: dict, log_path: Path) -> subprocess.Popen:
    with log_path.open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def test_run_serves_and_restarts_a_dead_worker(tmp_path, tiny_model_dir):
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    port = free_port()
    env = {**service_env(settings), "THAW_PORT": str(port)}
    log = (tmp_path / "run.log").open("w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: healthy(url))
        assert f"Thaw is up at http://127.0.0.1:{port}" in (tmp_path / "run.log").read_text()
        first = wait_for(lambda: worker_pid(supervisor.pid))
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: (pid := worker_pid(supervisor.pid)) and pid != first and pid)
        assert second != first
        assert "worker exited with code -9; restarting it" in (tmp_path / "run.log").read_text()
        assert healthy(url)
    finally:
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=60) == 0
        log.close()
    assert not Path(f"/proc/{second}").exists()  # the worker went down with it


def family(supervisor: int) -> list[int]:
    """The supervisor, its children (API, worker) and theirs (the worker's pool process)."""
    found, todo = [], [supervisor]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children(pid))
    return found


def stream_events(url: str, headers: dict, job_id: str, lines: list[str]) -> None:
    """Read the job's event stream until the server ends it."""
    stream_headers = {**headers, "Accept": "text/event-stream"}
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=stream_headers, timeout=60) as response:
        for line in response.iter_lines():
            lines.append(line)


def test_sigterm_stops_everything_and_the_job_goes_on_from_its_checkpoint(tmp_path, tiny_model_dir):
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    port = free_port()
    env = {**service_env(settings), "THAW_PORT": str(port), "THAW_CHECKPOINT_EVERY_STEPS": "1000"}
    url, headers = f"http://127.0.0.1:{port}", auth(new_key(settings))
    log_path = tmp_path / "run.log"
    supervisor = start_run(env, log_path)
    try:
        wait_for(lambda: healthy(url))
        wait_for(lambda: worker_pid(supervisor.pid))
        files = {"file": ("t.csv", as_csv(sentiment(200, seed=3)))}
        train = httpx.post(f"{url}/v1/datasets", headers=headers, files=files).json()["id"]
        spec = {
            "base_model": "tiny-bert",
            "data": {"train": train},
            "training": {"epochs": 20, "batch_size": 8, "learning_rate": 1e-3},
        }
        job_id = httpx.post(f"{url}/v1/jobs", headers=headers, json=spec).json()["id"]

        def progress() -> dict:
            return httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json()["progress"] or {}

        wait_for(lambda: progress().get("step", 0) >= 30, timeout=120)  # mid-epoch 2, no checkpoint yet
        lines: list[str] = []
        reader = threading.Thread(target=stream_events, args=(url, headers, job_id, lines), daemon=True)
        reader.start()
        wait_for(lambda: any(line.startswith("event: progress") for line in lines))
        processes = family(supervisor.pid)
        assert len(processes) >= 4, processes  # thaw run, the API, the worker and its pool process
        stopped_at = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        took = time.monotonic() - stopped_at
        reader.join(timeout=10)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    # Everything ended well inside the grace period (20 s): the open event stream kept nothing up.
    assert took < 15, f"thaw run took {took:.1f}s to stop:\n{log_path.read_text()[-3000:]}"
    assert not reader.is_alive()
    assert [pid for pid in processes if Path(f"/proc/{pid}").exists()] == []
    assert "did not stop within the grace period" not in log_path.read_text()

    # The job was given back, from a checkpoint written as it stopped (not the last epoch's end's).
    from app.db.models import Job, JobEvent
    from app.db.session import session_scope

    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, job_id)
        assert job.status == "queued" and job.attempts == 1
        kinds = [e.kind for e in session.query(JobEvent).filter_by(job_id=job_id).order_by(JobEvent.id)]
        requeued = session.query(JobEvent).filter_by(job_id=job_id, kind="requeued").one()
        assert "the worker is stopping: paused at step" in requeued.message
        stopped_step = int(requeued.message.split("paused at step ")[1].split()[0])
    assert kinds[-1] == "requeued" and "paused" not in kinds
    assert stopped_step >= 30

    supervisor = start_run(env, log_path)
    try:
        wait_for(lambda: healthy(url))
        job = wait_for(
            lambda: (
                (j := httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json())["status"] in {"succeeded", "failed"}
                and j
            ),
            timeout=300,
        )
        assert job["status"] == "succeeded", job["error"]
        assert job["attempts"] == 2
        resumed = [
            e
            for e in httpx.get(f"{url}/v1/jobs/{job_id}/events", headers=headers).json()["items"]
            if e["kind"] == "resumed"
        ]
        assert [e["data"]["step"] for e in resumed] == [stopped_step]
        assert job["metrics"]["resumed_from_step"] == stopped_step
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0

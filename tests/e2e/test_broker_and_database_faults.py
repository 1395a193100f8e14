"""Faults of the servers around the worker, with real processes: a Redis broker restarted while a job
trains and another waits in its queue, and the worker's PostgreSQL connections killed mid-training.
No job is lost, none trains twice, each ends with one model."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.conftest import build_settings, fresh_database
from tests.e2e.conftest import Service, run_service
from tests.utils.data import as_csv, sentiment
from tests.utils.services import free_port

pytestmark = pytest.mark.slow

SPEC = {"base_model": "tiny-bert", "training": {"epochs": 4, "batch_size": 8, "learning_rate": 1e-3}}


class PrivateRedis:
    """A redis-server of this test's own (append-only file on), so that restarting it disturbs nobody."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory, self.process = directory, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis(tmp_path_factory.mktemp("redis"))
        server.start()
    except (FileNotFoundError, RuntimeError) as error:
        pytest.fail(f"redis-server is needed for the broker restart test: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_model_dir: Path, postgres_server: str, private_redis) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("server-faults")
    with fresh_database(postgres_server) as url:
        yield from run_service(build_settings(root / "var", {"tiny-bert": tiny_model_dir}, url, private_redis.url))


def submit(service: Service, seed: int, epochs: int = 4) -> str:
    data = as_csv(sentiment(200, seed=seed))
    train = service.client.post("/v1/datasets", headers=service.headers, files={"file": ("t.csv", data)}).json()
    spec = {**SPEC, "data": {"train": train["id"]}, "training": {**SPEC["training"], "epochs": epochs}}
    response = service.client.post("/v1/jobs", headers=service.headers, json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def assert_trained_once(service: Service, job_id: str) -> None:
    job = service.wait(job_id, timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1
    assert service.models_of(job_id) == [job["model_id"]]
    events = service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("started") == 1 and kinds.count("succeeded") == 1


def test_a_broker_restart_loses_no_job_and_runs_none_twice(service, private_redis):
    running = submit(service, seed=1)
    service.wait_for_step(running, 5)
    waiting = submit(service, seed=2)  # one job at a time: this one waits in Redis
    private_redis.stop()
    time.sleep(1)
    private_redis.start()  # the append-only file brings the waiting message back
    assert_trained_once(service, running)
    assert_trained_once(service, waiting)


def test_killed_database_connections_cost_the_job_nothing(service, postgres_server):
    # Long enough that the connections die while it trains, not while it publishes (a finished job's
    # publication is one transaction that a dead connection fails; the guarantee is about training).
    job_id = submit(service, seed=3, epochs=40)
    service.wait_for_step(job_id, 5)
    database = service.settings.resolved_database_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for _ in range(3):  # the worker's (and the API's) connections die under them, again and again
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
            time.sleep(0.5)
    admin.dispose()
    assert service.client.get(f"/v1/jobs/{job_id}", headers=service.headers).json()["status"] == "running"
    assert_trained_once(service, job_id)

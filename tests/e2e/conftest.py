"""A whole service per backend: migrated database, broker, a real worker process, an HTTP client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from tests.conftest import build_settings, fresh_database
from tests.utils.services import WorkerProcess, auth, new_key

FINISHED = {"succeeded", "failed", "cancelled"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `sqlite_only` runs on the SQLite service alone: its PostgreSQL run is deselected
    (not skipped: a skip in CI would read as something missing)."""
    dropped = [item for item in items if item.get_closest_marker("sqlite_only") and "[postgresql" in item.name]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@dataclass
class Service:
    settings: Settings
    client: TestClient
    headers: dict[str, str]
    worker: WorkerProcess

    def wait(self, job_id: str, until: set[str] = FINISHED, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers).json()
            if job["status"] in until:
                return job
            time.sleep(0.2)
        raise AssertionError(
            f"job {job_id} still {job['status']} after {timeout}s:\n{self.worker.log_path.read_text()[-3000:]}"
        )

    def wait_for_step(self, job_id: str, step: int, timeout: float = 120) -> dict:
        """Until the job trains past `step` (for a fault test to strike mid-training)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers).json()
            if job["status"] == "running" and (job["progress"] or {}).get("step", 0) >= step:
                return job
            assert job["status"] in {"queued", "running"}, job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach step {step}")

    def models_of(self, job_id: str) -> list[str]:
        items = self.client.get("/v1/models?limit=200", headers=self.headers).json()["items"]
        return [m["id"] for m in items if m["job_id"] == job_id]


def broken_model(directory: Path) -> Path:
    """A catalog entry whose weights are not a model: training must fail and say why."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    (directory / "model.safetensors").write_bytes(b"this is not a safetensors file")
    return directory


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp(f"service-{request.param}")
    models = {"tiny-bert": tiny_model_dir, "broken": broken_model(root / "broken")}
    yield from backend_service(request, root, models)


def backend_service(request: pytest.FixtureRequest, root: Path, models: dict, **overrides) -> Iterator[Service]:
    """The service on the backend that `request.param` names (sqlite: SQLite + embedded broker;
    postgresql: a fresh PostgreSQL database + Redis), with `overrides` of its settings."""
    if request.param == "sqlite":
        yield from run_service(build_settings(root / "var", models).model_copy(update=overrides))
    else:
        with fresh_database(request.getfixturevalue("postgres_server")) as url:
            redis_url = request.getfixturevalue("redis_server")
            yield from run_service(build_settings(root / "var", models, url, redis_url).model_copy(update=overrides))


def run_service(settings: Settings) -> Iterator[Service]:
    """A real worker process and an in-process API (its lifespan, so its sweeper, running)."""
    worker = WorkerProcess(settings)
    service = None
    try:
        worker.wait_ready()
        with TestClient(create_app(settings)) as client:
            service = Service(settings, client, auth(new_key(settings)), worker)
            yield service
    finally:
        worker.stop()
        if service is not None and service.worker is not worker:
            service.worker.stop()  # the one a fault test started after killing the first

"""Helpers to stand the service up in tests: migrations, keys, clients, a real worker process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from alembic import command
from alembic.config import Config

from app.config import Settings
from app.db.session import session_scope
from app.services.keys import create_key

ROOT = Path(__file__).resolve().parents[2]


def migrate(url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def new_key(settings: Settings, tenant: str = "acme") -> str:
    with session_scope(settings.resolved_database_url) as session:
        return create_key(session, tenant_name=tenant)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process (worker, CLI) use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAW_")}
    env.update(
        {
            "THAW_VAR_DIR": str(settings.var_dir),
            "THAW_DATABASE_URL": settings.resolved_database_url,
            "THAW_BROKER_URL": settings.resolved_broker_url,
            "THAW_QUEUE": settings.queue,
            "THAW_BASE_MODELS": json.dumps({k: str(v) for k, v in settings.base_models.items()}),
            "THAW_PROGRESS_INTERVAL_SECONDS": str(settings.progress_interval_seconds),
            "THAW_CHECKPOINT_EVERY_STEPS": str(settings.checkpoint_every_steps),
            "THAW_HEARTBEAT_INTERVAL_SECONDS": str(settings.heartbeat_interval_seconds),
            "THAW_GPU_CLASSES": json.dumps(settings.gpu_classes),
            "THAW_PACKAGED_MODELS_DIR": str(settings.packaged_models_dir.resolve()),
        }
    )
    # Object storage shared with the API, when the settings use it.
    optional = {
        "THAW_ARTIFACTS_URL": settings.artifacts_url,
        "THAW_S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "THAW_S3_ACCESS_KEY_ID": settings.s3_access_key_id,
        "THAW_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key,
        "THAW_S3_REGION": settings.s3_region,
        "THAW_ARTIFACT_CACHE_DIR": settings.artifact_cache_dir and str(settings.artifact_cache_dir),
    }
    env.update({name: value for name, value in optional.items() if value is not None})
    return env


class WorkerProcess:
    """A real Celery worker (`thaw worker`) in its own process group, logging to a file. `queues`,
    `gpus` and `name` become its --queues, --gpus and --name flags (and name its log file)."""

    def __init__(
        self, settings: Settings, *, queues: str | None = None, gpus: str | None = None, name: str | None = None
    ) -> None:
        self.log_path = settings.var_dir / (f"worker-{name.split('@')[0]}.log" if name else "worker.log")
        self.log = self.log_path.open("w")
        flags = [
            *(["--queues", queues] if queues is not None else []),
            *(["--gpus", gpus] if gpus is not None else []),
            *(["--name", name] if name is not None else []),
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", *flags],
            cwd=ROOT,
            env=service_env(settings),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log_path.read_text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()


def free_port() -> int:
    """A loopback port nothing listens on (free again once the probe closes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = 60):
    """Poll `condition` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


def healthy(url: str) -> bool:
    """The API at `url` answers its health check."""
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

"""Shared fixtures: tiny models, real databases (SQLite file and PostgreSQL), real brokers.

Under CI=true a missing PostgreSQL or Redis fails the run instead of skipping its tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from app.client import Thaw
from app.config import Settings
from app.db.session import get_engine
from tests.utils.live_api import live_api
from tests.utils.services import migrate, new_key
from tests.utils.tiny_model import build_tiny_bert

PG_ADMIN_URL = os.environ.get("THAW_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("THAW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error})"
    if IN_CI:
        pytest.fail(f"{message}; CI requires it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means "no server"
        unavailable("PostgreSQL", error)
    return PG_ADMIN_URL


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    name = f"thaw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as error:  # noqa: BLE001
        unavailable("Redis", error)
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def build_settings(
    var_dir: Path,
    base_models: dict[str, Path],
    database_url: str | None = None,
    broker_url: str | None = None,
) -> Settings:
    """Migrated settings: SQLite + embedded broker by default, else the given database and broker."""
    result = Settings(
        var_dir=var_dir,
        # The catalog is the test's alone: encoders `make mpnet` installed for the repo are not in it
        # (tests/e2e/test_mpnet.py names that folder).
        packaged_models_dir=var_dir / "base-models",
        queue=f"thaw-test-{uuid.uuid4().hex[:8]}",
        base_models=base_models,
        progress_interval_seconds=0.2,
        database_url=database_url,
        broker_url=broker_url,
    )
    result.var_dir.mkdir(parents=True, exist_ok=True)
    migrate(result.resolved_database_url)
    return result


@pytest.fixture
def settings(backend: str, tmp_path: Path, tiny_model_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for one test on one backend: SQLite + embedded broker, or PostgreSQL + Redis."""
    if backend == "sqlite":
        return build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    return build_settings(
        tmp_path / "var",
        {"tiny-bert": tiny_model_dir},
        request.getfixturevalue("postgres_url"),
        request.getfixturevalue("redis_server"),
    )


# ---- a live API over real HTTP, for the client and the CLI (tests/client, tests/cli) ----


@pytest.fixture
def client_settings(tmp_path, tiny_model_dir) -> Settings:
    """SQLite and the embedded broker (the defaults); both backends are covered by the API tests."""
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    return settings.model_copy(update={"max_upload_bytes": 20_000, "job_submissions_per_minute": 5})


@pytest.fixture
def api_url(client_settings) -> Iterator[str]:
    with live_api(client_settings) as url:
        yield url


@pytest.fixture
def thaw(api_url, client_settings) -> Iterator[Thaw]:
    with Thaw(api_url, new_key(client_settings, "acme")) as client:
        yield client

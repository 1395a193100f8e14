"""GET /metrics: Prometheus text that says what the database, the broker and serving hold."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.adaptation import TaskData, adapt
from app.adaptation.job import save_result
from app.api.main import create_app
from app.config import Settings
from app.db.models import Job, Model, Tenant, utcnow
from app.db.session import session_scope
from app.queue import TRAIN_TASK
from app.storage.artifacts import LocalArtifactStore
from tests.adaptation.helpers import job
from tests.conftest import build_settings
from tests.utils.data import sentiment
from tests.utils.services import auth, new_key

Samples = dict[tuple[str, frozenset], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of GET /metrics (unauthenticated), by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def tenant_id(settings: Settings, name: str) -> str:
    with session_scope(settings.resolved_database_url) as session:
        return session.scalar(select(Tenant.id).where(Tenant.name == name))


def add_job(settings: Settings, tenant: str, status: str, **columns) -> None:
    with session_scope(settings.resolved_database_url) as session:
        session.add(Job(tenant_id=tenant, status=status, spec={"recipe": "lora", "base_model": "tiny-bert"}, **columns))


def test_metrics_needs_no_key_and_stays_out_of_the_api_schema(client):
    scrape(client)
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_jobs_by_status_and_job_durations_count_every_tenants_jobs(client, settings, headers, other_headers):
    acme, globex = tenant_id(settings, "acme"), tenant_id(settings, "globex")
    created = utcnow() - timedelta(hours=1)
    add_job(settings, acme, "queued", created_at=created)
    add_job(settings, globex, "queued", created_at=created)
    add_job(settings, acme, "running", created_at=created, started_at=created + timedelta(seconds=3))
    add_job(
        settings,
        acme,
        "succeeded",
        created_at=created,
        started_at=created + timedelta(seconds=100),
        train_seconds=2.0,
    )
    add_job(settings, globex, "succeeded", created_at=created, started_at=created, train_seconds=50.0)
    add_job(settings, globex, "cancelled", created_at=created)

    samples = scrape(client)

    expected = {"queued": 2, "running": 1, "paused": 0, "succeeded": 2, "failed": 0, "cancelled": 1}
    assert {status: value(samples, "thaw_jobs", status=status) for status in expected} == expected
    assert value(samples, "thaw_job_train_seconds_count") == 2
    assert value(samples, "thaw_job_train_seconds_sum") == 52.0
    assert value(samples, "thaw_job_train_seconds_bucket", le="1.0") == 0
    assert value(samples, "thaw_job_train_seconds_bucket", le="5.0") == 1
    assert value(samples, "thaw_job_train_seconds_bucket", le="60.0") == 2
    assert value(samples, "thaw_job_train_seconds_bucket", le="+Inf") == 2
    # Started jobs only: waited 3 s, 100 s and 0 s.
    assert value(samples, "thaw_job_queue_seconds_count") == 3
    assert value(samples, "thaw_job_queue_seconds_sum") == pytest.approx(103.0, abs=1e-3)
    assert value(samples, "thaw_job_queue_seconds_bucket", le="0.5") == 1
    assert value(samples, "thaw_job_queue_seconds_bucket", le="5.0") == 2
    assert value(samples, "thaw_job_queue_seconds_bucket", le="60.0") == 2
    assert value(samples, "thaw_job_queue_seconds_bucket", le="300.0") == 3


def test_queue_depth_is_the_messages_waiting_on_the_broker_in_every_routes_queue(settings):
    settings = settings.model_copy(update={"gpu_classes": ["a100"]})
    waiting = {
        settings.queue: 3,
        f"{settings.queue}.gpu": 2,
        f"{settings.queue}.a100": 1,
        f"{settings.queue}.gpu.x2": 1,
    }
    with TestClient(create_app(settings)) as client:
        celery = client.app.state.celery
        assert value(scrape(client), "thaw_queue_depth") == 0
        try:
            for queue, count in waiting.items():
                for number in range(count):
                    celery.send_task(TRAIN_TASK, args=[f"job_{number}"], queue=queue)
            samples = scrape(client)
            assert value(samples, "thaw_queue_depth") == 7  # GPU jobs wait too, not only the cpu route's
            for queue, count in waiting.items():
                assert value(samples, "thaw_route_queue_depth", queue=queue) == count
            assert value(samples, "thaw_route_queue_depth", queue=f"{settings.queue}.a100.x8") == 0
            assert value(samples, "thaw_broker_up") == 1
        finally:
            with celery.connection_for_write() as connection:
                for queue in waiting:
                    connection.default_channel.queue_purge(queue)


def test_an_unreachable_broker_costs_the_queue_depth_not_the_scrape(tmp_path, tiny_model_dir):
    nobody_listens = "redis://127.0.0.1:9/0"
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir}, broker_url=nobody_listens)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        samples = scrape(client)
        assert time.monotonic() - started < 5
    assert value(samples, "thaw_broker_up") == 0
    assert ("thaw_queue_depth", frozenset()) not in samples
    assert value(samples, "thaw_jobs", status="queued") == 0


# ---- serving -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny head-only model, saved as a job would save it."""
    spec = job(recipe="feature_extraction", training={"epochs": 1})
    directory = tmp_path_factory.mktemp("head-only")
    save_result(adapt(spec, TaskData(sentiment(16)), tiny_model_dir), spec, directory)
    return directory


def publish(settings: Settings, key_tenant: str, model_id: str, directory: Path) -> None:
    """The model in the store and in the database, the tenant's, as a finished job leaves it."""
    store = LocalArtifactStore(settings.resolved_artifacts_dir)
    shutil.copytree(directory, store.staging_dir(model_id), dirs_exist_ok=True)
    size = store.publish_model(model_id)
    spec = job(recipe="feature_extraction").model_dump(mode="json")
    with session_scope(settings.resolved_database_url) as session:
        session.add(
            Model(
                id=model_id,
                tenant_id=key_tenant,
                job_id="job_done",
                base_model="tiny-bert",
                spec=spec,
                labels=["neg", "pos"],
                metrics={},
                trainable_params=0,
                total_params=0,
                artifact_bytes=size,
            )
        )


@pytest.fixture
def served(tmp_path: Path, tiny_model_dir: Path, trained_model: Path) -> Iterator[tuple[TestClient, dict]]:
    """An API (SQLite) with one published model, `mdl_served`, and its owner's headers."""
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    headers = auth(new_key(settings, "acme"))
    publish(settings, tenant_id(settings, "acme"), "mdl_served", trained_model)
    with TestClient(create_app(settings)) as client:
        yield client, headers


def test_predict_latency_batch_sizes_and_model_cache_are_counted(served):
    client, headers = served
    sizes = [1, 3, 2, 5]
    for size in sizes:
        texts = [f"a great movie {n}" for n in range(size)]
        response = client.post("/v1/models/mdl_served/predict", json={"inputs": texts}, headers=headers)
        assert response.status_code == 200, response.text
    wrong_shape = client.post("/v1/models/mdl_served/predict", json={"inputs": [["a", "pair"]]}, headers=headers)
    assert wrong_shape.status_code == 422

    samples = scrape(client)

    assert value(samples, "thaw_predict_seconds_count", outcome="ok") == len(sizes)
    assert value(samples, "thaw_predict_seconds_count", outcome="invalid") == 1
    assert value(samples, "thaw_predict_seconds_count", outcome="error") == 0
    assert value(samples, "thaw_predict_seconds_bucket", outcome="ok", le="+Inf") == len(sizes)
    assert value(samples, "thaw_predict_seconds_sum", outcome="ok") > 0
    # One request at a time: each ran a forward pass of its own, with all its texts.
    assert value(samples, "thaw_predict_batch_size_count") == len(sizes)
    assert value(samples, "thaw_predict_batch_size_sum") == sum(sizes)
    assert value(samples, "thaw_predict_batch_size_bucket", le="2.0") == 2
    assert value(samples, "thaw_predict_batch_requests_sum") == len(sizes)
    # The first request loaded the model, the other three found it loaded.
    assert value(samples, "thaw_model_cache_misses_total") == 1
    assert value(samples, "thaw_model_cache_hits_total") == len(sizes) - 1
    assert value(samples, "thaw_model_cache_evictions_total") == 0
    assert value(samples, "thaw_model_cache_models") == 1
    assert value(samples, "thaw_model_cache_bytes") == client.app.state.model_cache.resident_bytes() > 0

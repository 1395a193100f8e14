"""The API's metrics, in a registry of its own per app (tests build many apps in one process).

Predict latency and batch sizes are observed as they happen; jobs, queue depth and the model cache
are read at scrape time (app/api/collectors.py). `GET /metrics` serves them (routes/metrics.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import Celery
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest

from app.api.collectors import JobsCollector, ModelCacheCollector, QueueDepthCollector
from app.config import Settings
from app.schemas.spec import MAX_JOB_GPUS
from app.services.errors import InvalidInput, RateLimited
from app.services.routing import every_queue

PREDICT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OUTCOMES = ("ok", "invalid", "overloaded", "error")


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, InvalidInput):
        return "invalid"
    if isinstance(error, RateLimited):  # the model's queue is full (429)
        return "overloaded"
    return "error"


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    predict_seconds: Histogram
    batch_texts: Histogram
    batch_requests: Histogram

    @contextmanager
    def timing_predict(self) -> Iterator[None]:
        """Observe the predict route's time, labelled by how it ended."""
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as raised:
            error = raised
            raise
        finally:
            self.predict_seconds.labels(outcome_of(error)).observe(time.perf_counter() - started)

    def observe_batch(self, texts: int, requests: int) -> None:
        """A forward pass of the micro-batcher ran (serving's `on_batch`)."""
        self.batch_texts.observe(texts)
        self.batch_requests.observe(requests)

    def exposition(self) -> bytes:
        """Every metric, in Prometheus' text format."""
        return generate_latest(self.registry)


def build_metrics(settings: Settings, celery: Celery, model_cache: Callable[[], Any]) -> Metrics:
    """The app's metrics; `model_cache` returns serving's ModelCache, or None before the first prediction."""
    registry = CollectorRegistry()
    predict_seconds = Histogram(
        "thaw_predict_seconds",
        "Time of the predict route (model load if needed, queueing, forward pass), by outcome.",
        ["outcome"],
        buckets=PREDICT_BUCKETS,
        registry=registry,
    )
    for outcome in OUTCOMES:  # every series present from the start, at zero
        predict_seconds.labels(outcome)
    batch_texts = Histogram(
        "thaw_predict_batch_size",
        "Texts per forward pass of the micro-batcher.",
        buckets=BATCH_TEXT_BUCKETS,
        registry=registry,
    )
    batch_requests = Histogram(
        "thaw_predict_batch_requests",
        "Predict requests sharing one forward pass of the micro-batcher.",
        buckets=BATCH_REQUEST_BUCKETS,
        registry=registry,
    )
    registry.register(JobsCollector(settings.resolved_database_url))
    queues = every_queue(settings.queue, settings.gpu_classes, MAX_JOB_GPUS)
    registry.register(QueueDepthCollector(celery, queues))
    registry.register(ModelCacheCollector(model_cache))
    ProcessCollector(registry=registry)  # the API process's memory, CPU and open files
    return Metrics(registry, predict_seconds, batch_texts, batch_requests)

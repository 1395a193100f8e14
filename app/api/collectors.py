"""Metrics read when Prometheus scrapes: jobs and their durations from the database, the broker's
queue depth, the model cache's counters. Read at scrape time, the database's figures are the same
from every API replica; a source that does not answer costs its samples, never the scrape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import ColumnElement, case, extract, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db.models import Job
from app.db.session import session_scope
from app.services.jobs import FINISHED

log = logging.getLogger(__name__)

JOB_STATUSES = ("queued", "running", "paused", *FINISHED)
TRAIN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
QUEUE_BUCKETS = (0.5, 1, 5, 15, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)


# ---- jobs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """A histogram's cumulative counts, one per bucket bound (the last one +Inf), and its sum."""

    bounds: Sequence[float]
    cumulative: list[int]
    total: float

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets = [(_bound(b), n) for b, n in zip([*self.bounds, math.inf], self.cumulative, strict=True)]
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else str(float(value))


def job_counts(session: Session) -> dict[str, int]:
    """Jobs of every tenant per status; every status present, at zero if none."""
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update(session.execute(select(Job.status, func.count()).group_by(Job.status)).tuples().all())
    return counts


def distribution(session: Session, value: ColumnElement[Any], bounds: Sequence[float]) -> Distribution:
    """The histogram of `value` over the jobs where it is known, counted by the database in one query."""
    counts = [func.count(case((value <= bound, 1))) for bound in bounds]
    row = session.execute(
        select(*counts, func.count(value), func.coalesce(func.sum(value), 0)).where(value.is_not(None))
    ).one()
    return Distribution(bounds, [int(n) for n in row[:-1]], float(row[-1]))


def seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[Any] | None:
    """`end - start` in seconds, in the database's own terms; None where we do not know them."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":  # datetimes stored as text
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    if dialect == "postgresql":
        return extract("epoch", end - start)
    return None


class JobsCollector:
    """`thaw_jobs{status}`, `thaw_job_train_seconds` and `thaw_job_queue_seconds`, from the database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[Metric]:
        try:
            with session_scope(self.database_url) as session:
                counts = job_counts(session)
                train = distribution(session, Job.train_seconds, TRAIN_BUCKETS)
                waited = seconds_between(session, Job.created_at, Job.started_at)
                queue = None if waited is None else distribution(session, waited, QUEUE_BUCKETS)
        except SQLAlchemyError as error:
            log.warning("metrics: the database is unreachable, job metrics skipped: %s", error)
            return
        jobs = GaugeMetricFamily("thaw_jobs", "Jobs of every tenant, by status.", labels=["status"])
        for status, count in counts.items():
            jobs.add_metric([status], count)
        yield jobs
        yield train.family("thaw_job_train_seconds", "Training time of the jobs that succeeded.")
        if queue is not None:
            yield queue.family("thaw_job_queue_seconds", "Time from submission to a worker's first start, per job.")


# ---- the broker ------------------------------------------------------------------------------------


def waiting_messages(celery: Celery, queues: list[str], timeout: float) -> dict[str, int]:
    """Messages waiting in each of `queues` on the broker (not those a worker has taken), read over
    one connection; raises if the broker does not answer within about `timeout` seconds."""
    # Transport options are passed to the SQLAlchemy transport's create_engine: only Redis gets these.
    redis = celery.conf.broker_url.startswith(("redis://", "rediss://"))
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout} if redis else {}
    with celery.connection_for_read(connect_timeout=timeout, transport_options=options) as connection:
        connection.ensure_connection(max_retries=0)  # one try: a scrape must not wait out retries
        return {queue: _waiting_in(connection, queue) for queue in queues}


def _waiting_in(connection: Any, queue: str) -> int:
    # A channel per queue: AMQP closes the channel on which a passive declare finds no queue.
    channel = connection.channel()
    try:
        return channel.queue_declare(queue, passive=True).message_count
    except ChannelError:  # no such queue (Redis deletes an empty one): nothing waits
        return 0
    finally:
        _close_sql_session(channel)
        channel.close()


def _close_sql_session(channel: Any) -> None:
    # kombu's SQLAlchemy transport opens a session per channel and never closes it: that would keep a
    # SQLite read transaction (or a pooled connection) open until garbage collection.
    session = getattr(channel, "_session", None)
    if session is not None:
        session.close()


class QueueDepthCollector:
    """`thaw_queue_depth` (every route's queues together) and `thaw_route_queue_depth{queue}` (each
    queue), omitted when the broker does not answer; and `thaw_broker_up`."""

    def __init__(self, celery: Celery, queues: list[str], timeout: float = 2.0) -> None:
        self.celery, self.queues, self.timeout = celery, queues, timeout

    def collect(self) -> Iterator[Metric]:
        try:
            depths = waiting_messages(self.celery, self.queues, self.timeout)
        except Exception as error:  # noqa: BLE001 - any failure means "broker unreachable"
            log.warning("metrics: the broker is unreachable, queue depth skipped: %s", error)
            yield GaugeMetricFamily("thaw_broker_up", "1 when the broker answered this scrape, else 0.", value=0)
            return
        yield GaugeMetricFamily("thaw_broker_up", "1 when the broker answered this scrape, else 0.", value=1)
        yield GaugeMetricFamily(
            "thaw_queue_depth",
            "Training jobs waiting in the broker for a worker, in every route's queue.",
            value=sum(depths.values()),
        )
        by_queue = GaugeMetricFamily(
            "thaw_route_queue_depth",
            "Training jobs waiting in each route's queue (cpu, gpu, GPU classes; .xN for N GPUs).",
            labels=["queue"],
        )
        for queue, depth in depths.items():
            by_queue.add_metric([queue], depth)
        yield by_queue


# ---- the model cache ---------------------------------------------------------------------------------


class ModelCacheCollector:
    """The serving model cache's hits, misses, evictions, loaded models and their memory; zeros until
    the first prediction creates it. `cache` returns it (a ModelCache) or None."""

    def __init__(self, cache: Callable[[], Any]) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self.cache()
        hits, misses, evictions = (cache.hits, cache.misses, cache.evictions) if cache else (0, 0, 0)
        models, resident = (len(cache.loaded()), cache.resident_bytes()) if cache else (0, 0)
        yield CounterMetricFamily("thaw_model_cache_hits", "Lookups that found the model loaded.", value=hits)
        yield CounterMetricFamily("thaw_model_cache_misses", "Lookups that had to load the model.", value=misses)
        yield CounterMetricFamily(
            "thaw_model_cache_evictions", "Models unloaded to keep the cache within its budget.", value=evictions
        )
        yield GaugeMetricFamily(
            "thaw_model_cache_models", "Trained models loaded (an ensemble counts once).", value=models
        )
        yield GaugeMetricFamily(
            "thaw_model_cache_bytes",
            "Memory of the loaded models' weights, a shared base model's encoder counted once.",
            value=resident,
        )

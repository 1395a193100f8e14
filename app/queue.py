"""The job queue's contract, shared by the API (which sends jobs) and the worker (which runs them):
the task's name, the Celery app's configuration, and the sender of a job to its route's queue.

Nothing here is built at import time: `make_celery` is called by whoever needs an app (the API once
per process, in create_app; the worker in worker/celery_app.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from celery import Celery

from app.config import Settings
from app.services.routing import job_queue

if TYPE_CHECKING:
    from app.schemas.spec import Compute

TRAIN_TASK = "thaw.train"
MODEL_RUN_TASK = "thaw.model_run"  # an evaluation or batch prediction (app/services/model_runs.py)
WEEK = 7 * 24 * 3600


def make_celery(settings: Settings, include: list[str] | None = None) -> Celery:
    """A Celery app for `settings`' broker; `include`: the task modules a worker imports."""
    if settings.broker_url is None:
        settings.var_dir.mkdir(parents=True, exist_ok=True)  # the embedded broker's SQLite file lives here
    app = Celery("thaw", broker=settings.resolved_broker_url, include=include or [])
    app.conf.update(
        task_default_queue=settings.queue,
        task_ignore_result=True,
        # Training runs long: take one job at a time, acknowledge only when it is done, and give a
        # job back to the queue if the process running it dies.
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if settings.resolved_broker_url.startswith(("redis://", "rediss://")):
        # Redis redelivers an unacknowledged message after its visibility timeout while the first
        # run still trains (celery#5935): make that longer than any job.
        app.conf.broker_transport_options = {"visibility_timeout": WEEK}
    return app


def job_sender(celery: Celery, settings: Settings) -> Callable[[str, Compute], None]:
    """Sends a job's id to the queue of its compute route (an Enqueue for app/services/jobs.py)."""

    def enqueue(job_id: str, compute: Compute) -> None:
        celery.send_task(TRAIN_TASK, args=[job_id], queue=job_queue(settings.queue, compute))

    return enqueue


def run_sender(celery: Celery, settings: Settings) -> Callable[[str], None]:
    """Sends a model run's id to the default queue (the CPU route's): a run is one inference pass,
    which every worker can do (an EnqueueRun for app/services/model_runs.py)."""

    def enqueue(run_id: str) -> None:
        celery.send_task(MODEL_RUN_TASK, args=[run_id], queue=settings.queue)

    return enqueue

"""Thin tasks: take an id, hand it to the runner that does the work."""

from __future__ import annotations

import os

from celery import Task
from celery.app.task import Context
from celery.exceptions import Reject

from app.config import get_settings
from app.queue import MODEL_RUN_TASK, TRAIN_TASK
from worker.celery_app import celery_app
from worker.draining import draining


@celery_app.task(name=TRAIN_TASK, bind=True)
def train(self: Task, job_id: str) -> None:
    refuse_while_stopping()
    # Imported here so torch (and CUDA) initialise only in the process that trains, never in the
    # parent that forks it.
    from worker.runner import run_job

    run_job(get_settings(), job_id, placement=placement(self.request))


@celery_app.task(name=MODEL_RUN_TASK)
def model_run(run_id: str) -> None:
    """An evaluation or batch prediction of a trained model (worker/model_runs.py)."""
    refuse_while_stopping()
    from worker.model_runs import run_model_run

    run_model_run(get_settings(), run_id)


def refuse_while_stopping() -> None:
    """A worker that is stopping still receives messages until its running task ends (one it has just
    given back, among them): it hands them back to the broker untouched, for another worker."""
    if draining():
        raise Reject("the worker is stopping", requeue=True)


def placement(request: Context) -> dict[str, str | None]:
    """Where the job runs, for its `started` event: the worker (Celery node name), the queue the
    message came from, and the GPUs this pool process sees (None: not pinned)."""
    return {
        "worker": request.hostname,
        "queue": (request.delivery_info or {}).get("routing_key"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }

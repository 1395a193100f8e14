"""Thin tasks: take an id, hand it to the service that does the work."""

from __future__ import annotations

from app.config import get_settings
from worker.celery_app import TRAIN_TASK, celery_app


@celery_app.task(name=TRAIN_TASK)
def train(job_id: str) -> None:
    # Imported here so torch (and CUDA) initialise only in the process that trains, never in the
    # parent that forks it.
    from app.services.training import run_job

    run_job(get_settings(), job_id)

"""The Celery application. Only configuration lives here; the API sends tasks to it by name."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from billiard.process import current_process
from celery import Celery, signals

from app.config import Settings, get_settings
from app.logs import configure_logging
from app.schemas.spec import Compute
from app.services.routing import gpu_slices, job_queue

log = logging.getLogger(__name__)

TRAIN_TASK = "thaw.train"
WEEK = 7 * 24 * 3600


def make_celery(settings: Settings) -> Celery:
    settings.var_dir.mkdir(parents=True, exist_ok=True)  # the embedded broker's SQLite file lives here
    app = Celery("thaw", broker=settings.resolved_broker_url, include=["worker.tasks"])
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


@signals.worker_process_init.connect
def _pin_gpus(**_kwargs: object) -> None:
    """Each pool process trains on its own share of the worker's GPUs (THAW_WORKER_GPUS): set here,
    before the task first imports torch, CUDA_VISIBLE_DEVICES makes that share the only devices it
    sees. billiard gives a process that replaces a dead one the same index, so the same GPUs."""
    settings = get_settings()
    if not settings.worker_gpus:
        return  # a CPU worker, or one the operator pins from outside (a container given one GPU)
    try:
        slices = gpu_slices(settings.worker_gpus, settings.worker_concurrency or len(settings.worker_gpus))
    except ValueError:  # `thaw worker` refuses this; celery started by hand with settings that disagree
        slices = []
    index = getattr(current_process(), "index", 0)
    # --gpus numbers are nvidia-smi's; CUDA numbers the fastest device first unless told otherwise.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if index < len(slices):
        os.environ["CUDA_VISIBLE_DEVICES"] = slices[index]
    else:  # no share for this process: hide the GPUs rather than let two processes share one
        log.error("pool process %d has no share of GPUs %s; it sees none", index, settings.worker_gpus)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


@signals.setup_logging.connect
def _configure_logging(**_kwargs: object) -> None:
    """The worker logs like the API (JSON lines by default): with a receiver here, Celery leaves the
    logging setup to us, in the worker and in each pool process."""
    configure_logging(get_settings())


celery_app = make_celery(get_settings())

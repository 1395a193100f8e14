"""The worker's Celery application (`celery -A worker.celery_app worker`), configured by the queue
contract (app/queue.py), and the signals that set up each pool process."""

from __future__ import annotations

import logging
import os

from billiard.process import current_process
from celery import signals

from app.config import get_settings
from app.logs import configure_logging
from app.queue import make_celery
from app.services.routing import gpu_slices
from worker import draining

log = logging.getLogger(__name__)


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


@signals.task_prerun.connect
def _listen_for_sigterm(**_kwargs: object) -> None:
    draining.listen()


@signals.worker_shutting_down.connect
def _drain_pool_processes(how: str = "Warm", **_kwargs: object) -> None:
    """A warm shutdown waits for the running task: tell it to give its job back (worker/draining.py)."""
    draining.on_shutdown(how)


@signals.setup_logging.connect
def _configure_logging(**_kwargs: object) -> None:
    """The worker logs like the API (JSON lines by default): with a receiver here, Celery leaves the
    logging setup to us, in the worker and in each pool process."""
    configure_logging(get_settings())


celery_app = make_celery(get_settings(), include=["worker.tasks"])

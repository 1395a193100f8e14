"""The Celery application. Only configuration lives here; the API sends tasks to it by name."""

from __future__ import annotations

from celery import Celery, signals

from app.config import Settings, get_settings
from app.logs import configure_logging

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


@signals.setup_logging.connect
def _configure_logging(**_kwargs: object) -> None:
    """The worker logs like the API (JSON lines by default): with a receiver here, Celery leaves the
    logging setup to us, in the worker and in each pool process."""
    configure_logging(get_settings())


celery_app = make_celery(get_settings())

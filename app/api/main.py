"""The FastAPI application: `create_app(settings)` wires settings, catalog, queue and routes."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.errors import install_error_handlers
from app.api.observability import build_metrics
from app.api.rate_limits import build_rate_limits
from app.api.request_context import RequestContext
from app.api.routes import (
    base_models,
    datasets,
    evaluations,
    experiments,
    health,
    jobs,
    metrics,
    models,
    predictions,
    ui,
)
from app.api.stopping import note_stop_signals
from app.catalog import Catalog
from app.config import Settings, get_settings
from app.logs import configure_logging
from app.queue import job_sender, make_celery, run_sender
from app.services.sweeper import Sweeper, Swept, sweep, sweep_runs
from app.services.webhooks import start_dispatcher
from app.storage.store import build_store


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title="Thaw",
        version="0.1.0",
        description="Adapt pretrained language models to your own text classification tasks.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.catalog = Catalog(settings)
    app.state.store = build_store(settings)  # one per replica: an object store's connections are reused
    app.state.celery = make_celery(settings)
    app.state.serving = None  # created on the first prediction (app/api/deps.py)
    app.state.model_cache = None
    app.state.stopping = threading.Event()  # set by SIGTERM or Ctrl-C: event streams end (app/api/stopping.py)
    app.state.metrics = build_metrics(settings, app.state.celery, lambda: app.state.model_cache)
    app.state.rate_limits = build_rate_limits(settings.predict_requests_per_minute, settings.job_submissions_per_minute)
    install_error_handlers(app)
    app.add_middleware(RequestContext)
    app.include_router(metrics.router)
    for module in (health, base_models, datasets, jobs, models, evaluations, predictions, experiments, ui):
        app.include_router(module.router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the API runs, it re-queues jobs whose worker was lost (app/services/sweeper.py) and
    delivers the webhooks of finished jobs (app/services/webhooks.py)."""
    settings: Settings = app.state.settings
    sweeper = None
    if settings.sweep_interval_seconds > 0:
        store = app.state.store
        enqueue = job_sender(app.state.celery, settings)  # a lost job goes back to its route's queue
        enqueue_run = run_sender(app.state.celery, settings)
        limits = {"timeout_seconds": settings.heartbeat_timeout_seconds, "max_attempts": settings.max_attempts}

        def run() -> Swept:
            jobs = sweep(settings.resolved_database_url, store, enqueue, **limits)
            runs = sweep_runs(settings.resolved_database_url, enqueue_run, **limits)
            return Swept(jobs.requeued + runs.requeued, jobs.failed + runs.failed)

        sweeper = Sweeper(settings.sweep_interval_seconds, run)
        sweeper.start()
    dispatcher = start_dispatcher(settings)
    restore_signals = note_stop_signals(app.state.stopping)
    try:
        yield
    finally:
        restore_signals()
        if dispatcher is not None:
            dispatcher.stop()
        if sweeper is not None:
            sweeper.stop()
        if app.state.serving is not None:
            app.state.serving.close()

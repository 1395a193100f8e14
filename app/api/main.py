"""The FastAPI application: `create_app(settings)` wires settings, catalog, queue and routes."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.errors import install_error_handlers
from app.api.routes import base_models, datasets, health, jobs, models
from app.catalog import Catalog
from app.config import Settings, get_settings
from worker.celery_app import make_celery


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Thaw",
        version="0.1.0",
        description="Adapt pretrained language models to your own text classification tasks.",
    )
    app.state.settings = settings
    app.state.catalog = Catalog(settings)
    app.state.celery = make_celery(settings)
    app.state.model_cache = None
    install_error_handlers(app)
    for module in (health, base_models, datasets, jobs, models):
        app.include_router(module.router)
    return app

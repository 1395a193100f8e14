"""Typed dependencies: settings, a database session, the caller's tenant, the artifact store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.catalog import Catalog
from app.config import Settings
from app.db.models import Tenant
from app.db.session import open_session
from app.services.keys import tenant_for_key
from app.storage.store import ArtifactStore

# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in its
# threadpool, a hop that costs more than a predict request's own Python work.


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = open_session(settings.resolved_database_url)
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def bearer_key(authorization: str | None) -> str | None:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


def unauthorized() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="missing or invalid API key; send 'Authorization: Bearer <key>' "
        "(create one with: thaw keys create --tenant NAME)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def current_tenant(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> Tenant:
    key = bearer_key(authorization)
    tenant = tenant_for_key(session, key=key) if key else None
    if tenant is None:
        raise unauthorized()
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]


async def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


StoreDep = Annotated[ArtifactStore, Depends(get_store)]


async def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


CatalogDep = Annotated[Catalog, Depends(get_catalog)]


_serving_lock = threading.Lock()


def _create_serving(app: Any) -> Any:
    # Serving loads torch; it is imported on the first prediction so the API starts without it.
    with _serving_lock:
        if app.state.serving is None:
            from app.serving.predictor import Serving

            app.state.serving = Serving(app.state.settings, on_batch=app.state.metrics.observe_batch)
            app.state.model_cache = app.state.serving.cache
    return app.state.serving


async def get_serving(request: Request) -> Any:
    if request.app.state.serving is not None:
        return request.app.state.serving
    return await run_in_threadpool(_create_serving, request.app)


async def get_model_cache(request: Request) -> Any:
    return (await get_serving(request)).cache

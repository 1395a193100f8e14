"""Typed dependencies: settings, a database session, the caller's tenant, the artifact store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from app.catalog import Catalog
from app.config import Settings
from app.db.models import Tenant
from app.db.session import open_session
from app.services.keys import tenant_for_key
from app.storage.artifacts import LocalArtifactStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = open_session(settings.resolved_database_url)
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def current_tenant(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> Tenant:
    scheme, _, key = (authorization or "").partition(" ")
    tenant = tenant_for_key(session, key=key.strip()) if scheme.lower() == "bearer" and key else None
    if tenant is None:
        raise HTTPException(
            status_code=401,
            detail="missing or invalid API key; send 'Authorization: Bearer <key>' "
            "(create one with: thaw keys create --tenant NAME)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]


def get_store(settings: SettingsDep) -> LocalArtifactStore:
    return LocalArtifactStore(settings.resolved_artifacts_dir)


StoreDep = Annotated[LocalArtifactStore, Depends(get_store)]


def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


CatalogDep = Annotated[Catalog, Depends(get_catalog)]


_serving_lock = threading.Lock()


def get_serving(request: Request) -> Any:
    # Serving loads torch; it is imported on the first prediction so the API starts without it.
    with _serving_lock:
        if request.app.state.serving is None:
            from app.serving.predictor import Serving

            request.app.state.serving = Serving(request.app.state.settings)
            request.app.state.model_cache = request.app.state.serving.cache
    return request.app.state.serving


def get_model_cache(request: Request) -> Any:
    return get_serving(request).cache

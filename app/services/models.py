"""Trained models: look up, list, delete (row and artifact)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Model
from app.db.pagination import newest_first
from app.services.errors import NotFound
from app.storage.artifacts import LocalArtifactStore


def get_model(session: Session, *, tenant_id: str, model_id: str) -> Model:
    model = session.get(Model, model_id)
    if model is None or model.tenant_id != tenant_id:
        raise NotFound(f"model {model_id!r} not found")
    return model


def list_models(session: Session, *, tenant_id: str, limit: int, offset: int) -> tuple[list[Model], int]:
    query = select(Model).where(Model.tenant_id == tenant_id)
    return newest_first(session, query, Model, limit=limit, offset=offset)


def delete_model(session: Session, store: LocalArtifactStore, *, tenant_id: str, model_id: str) -> None:
    model = get_model(session, tenant_id=tenant_id, model_id=model_id)
    session.delete(model)
    session.commit()  # the row goes first: a failed commit must not leave a row without its files
    store.delete_model(model_id)

"""Trained models: look up, list, delete (row and artifact)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, and_, select
from sqlalchemy.orm import Session

from app.db.models import ApiKey, Job, Model, ModelRun, find
from app.db.pagination import newest_first
from app.services.datasets import ACTIVE
from app.services.errors import Conflict, NotFound
from app.services.keys import hash_key
from app.storage.store import ArtifactStore


def get_model(session: Session, *, tenant_id: str, model_id: str) -> Model:
    model = find(session, Model, model_id)
    if model is None or model.tenant_id != tenant_id:
        raise NotFound(f"model {model_id!r} not found")
    return model


@dataclass(frozen=True)
class Servable:
    """What serving needs to know of a model."""

    id: str
    base_model: str
    takes_pairs: bool
    abstain_below: float | None = None  # the job spec's: under it, a prediction's label is null


def find_servable(engine: Engine, *, key: str, model_id: str) -> tuple[bool, Servable | None]:
    """(whether the key is live, the model if that key's tenant owns it), in one query: the predict
    route's hot path, without an ORM session."""
    query = (
        select(Model.id, Model.base_model, Model.spec)
        .select_from(ApiKey)
        .outerjoin(Model, and_(Model.id == model_id, Model.tenant_id == ApiKey.tenant_id))
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return False, None
    if row.id is None:
        return True, None
    return True, Servable(row.id, row.base_model, bool(row.spec.get("text_fields")), row.spec.get("abstain_below"))


def list_models(session: Session, *, tenant_id: str, limit: int, offset: int) -> tuple[list[Model], int]:
    query = select(Model).where(Model.tenant_id == tenant_id)
    return newest_first(session, query, Model, limit=limit, offset=offset)


def referenced_models(spec: dict) -> set[str]:
    """Every model a stored (expanded) job spec reads: its teacher, and its regularizers' source
    models, its ensemble members' included."""
    specs = [spec, *((spec.get("ensemble") or {}).get("members") or [])]
    named = {s.get("teacher") for s in specs}
    named |= {r.get("source_model") for s in specs for r in s.get("optimization", {}).get("regularizers", [])}
    return named - {None}


def delete_model(session: Session, store: ArtifactStore, *, tenant_id: str, model_id: str) -> None:
    model = get_model(session, tenant_id=tenant_id, model_id=model_id)
    for job in session.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE))):
        if model_id in referenced_models(job.spec):
            raise Conflict(f"model {model_id!r} is in use by {job.status} job {job.id!r}; cancel it first")
    runs = session.execute(
        select(ModelRun.id, ModelRun.kind, ModelRun.status).where(ModelRun.model_id == model_id)
    ).all()
    for run in runs:
        if run.status == "running":
            raise Conflict(f"model {model_id!r} is in use by running {run.kind} {run.id!r}; delete it once that ends")
    outputs = [run.id for run in runs if run.kind == "prediction"]  # the runs' rows go with it (ON DELETE CASCADE)
    session.delete(model)
    session.commit()  # the row goes first: a failed commit must not leave a row without its files
    store.delete_model(model_id)
    for run_id in outputs:
        store.delete_dataset(run_id)

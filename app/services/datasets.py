"""Datasets: validated uploads stored as JSONL of strings, with their metadata in the database."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, Job, new_id
from app.db.pagination import newest_first
from app.services.errors import Conflict, InvalidInput, NotFound
from app.storage.artifacts import LocalArtifactStore
from app.storage.tables import InvalidTable, Table, label_counts, parse_table, require_column

ACTIVE = ("queued", "running", "paused")  # jobs that will still read their datasets


def create_dataset(
    session: Session,
    store: LocalArtifactStore,
    *,
    tenant_id: str,
    name: str,
    filename: str,
    raw: bytes,
    text_field: str,
    label_field: str | None,
) -> Dataset:
    """Parse and check the upload; store it. An unlabeled table (no label column) is valid."""
    try:
        table = parse_table(raw, filename)
        require_column(table, text_field, "text")
        label = _label_column(table, label_field)
    except InvalidTable as error:
        raise InvalidInput(f"{filename}: {error}") from None
    dataset = Dataset(
        id=new_id("ds"),
        tenant_id=tenant_id,
        name=name,
        filename=filename,
        format=table.format,
        rows=len(table.rows),
        columns=table.columns,
        text_field=text_field,
        label_field=label,
        label_counts=label_counts(table.rows, label) if label else None,
        size_bytes=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    store.write_dataset(dataset.id, table.rows)
    session.add(dataset)
    return dataset


def _label_column(table: Table, label_field: str | None) -> str | None:
    """An explicit label_field must exist; the default `label` is used only when present."""
    if label_field is None:
        label_field = "label" if "label" in table.columns else None
    if label_field is not None:
        require_column(table, label_field, "label")
    return label_field


def referenced_datasets(spec: dict) -> set[str]:
    """Every dataset a stored (expanded) job spec reads: its data, and EWC's Fisher data."""
    data = {spec["data"].get(k) for k in ("train", "validation", "test")}
    fisher = {r.get("fisher_data") for r in spec.get("optimization", {}).get("regularizers", [])}
    return (data | fisher) - {None}


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant_id:
        raise NotFound(f"dataset {dataset_id!r} not found")
    return dataset


def list_datasets(session: Session, *, tenant_id: str, limit: int, offset: int) -> tuple[list[Dataset], int]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return newest_first(session, query, Dataset, limit=limit, offset=offset)


def delete_dataset(session: Session, store: LocalArtifactStore, *, tenant_id: str, dataset_id: str) -> None:
    dataset = get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    for job in session.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE))):
        if dataset_id in referenced_datasets(job.spec):
            raise Conflict(f"dataset {dataset_id!r} is in use by {job.status} job {job.id!r}; cancel it first")
    session.delete(dataset)
    session.commit()  # the row goes first: a failed commit must not leave a row without its file
    store.delete_dataset(dataset_id)


def check_columns(store: LocalArtifactStore, dataset: Dataset, *, text_fields: list[str], label_field: str) -> None:
    """A job may read other columns than the upload's defaults: check them the same way."""
    if (text_fields, label_field) == ([dataset.text_field], dataset.label_field):
        return
    rows = store.read_dataset(dataset.id)
    table = Table(dataset.format, dataset.columns, rows, list(range(1, len(rows) + 1)))
    try:
        for text_field in text_fields:
            require_column(table, text_field, "text")
        require_column(table, label_field, "label")
    except InvalidTable as error:
        raise InvalidInput(f"dataset {dataset.id!r} (rows counted from 1): {error}") from None

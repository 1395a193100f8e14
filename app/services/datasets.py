"""Datasets: validated uploads stored as JSONL of strings, with their metadata in the database."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, Job, find, new_id
from app.db.pagination import newest_first
from app.schemas.spec import JobSpec
from app.services.errors import Conflict, InvalidInput, NotFound
from app.storage.store import ArtifactStore
from app.storage.tables import InvalidTable, Table, label_counts, parse_table, require_column

ACTIVE = ("queued", "running", "paused")  # jobs that will still read their datasets


def create_dataset(
    session: Session,
    store: ArtifactStore,
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


def referenced_datasets(spec: dict[str, Any]) -> set[str]:
    """Every dataset a stored (expanded) job spec reads (JobSpec.dataset_refs: its data and every
    option's, its ensemble members' too)."""
    return {ref.dataset_id for ref in JobSpec.model_validate(spec).dataset_refs()}


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset:
    dataset = find(session, Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant_id:
        raise NotFound(f"dataset {dataset_id!r} not found")
    return dataset


def list_datasets(session: Session, *, tenant_id: str, limit: int, offset: int) -> tuple[list[Dataset], int]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return newest_first(session, query, Dataset, limit=limit, offset=offset)


def delete_dataset(session: Session, store: ArtifactStore, *, tenant_id: str, dataset_id: str) -> None:
    dataset = get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    for job in session.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE))):
        if dataset_id in referenced_datasets(job.spec):
            raise Conflict(f"dataset {dataset_id!r} is in use by {job.status} job {job.id!r}; cancel it first")
    session.delete(dataset)
    session.commit()  # the row goes first: a failed commit must not leave a row without its file
    store.delete_dataset(dataset_id)


class RowSource(Protocol):
    def read_dataset(self, dataset_id: str) -> list[dict[str, Any]]: ...


class CachedRows:
    """A store's dataset rows, each dataset read at most once (a submission checks several columns
    of the same dataset)."""

    def __init__(self, store: RowSource) -> None:
        self.store = store
        self.cache: dict[str, list[dict[str, Any]]] = {}

    def read_dataset(self, dataset_id: str) -> list[dict[str, Any]]:
        if dataset_id not in self.cache:
            self.cache[dataset_id] = self.store.read_dataset(dataset_id)
        return self.cache[dataset_id]


def check_columns(
    store: RowSource,
    dataset: Dataset,
    *,
    text_fields: list[str],
    label_field: str | None,
    field: str = "",
    labels_for: str = "the task",
) -> None:
    """A job may read other columns than the upload's defaults (which the upload checked): check them
    the same way. `label_field` None: only text is read (masked LM, unlabeled text). `field` names the
    spec field that chose the dataset; `labels_for` says what needs the labels."""
    prefix = f"{field}: " if field else ""
    texts = [name for name in text_fields if name != dataset.text_field]
    label = label_field if label_field is not None and label_field != dataset.label_field else None
    if not texts and label is None:
        return
    rows = store.read_dataset(dataset.id)
    table = Table(dataset.format, dataset.columns, rows, list(range(1, len(rows) + 1)))
    try:
        for text_field in texts:
            require_column(table, text_field, "text")
        if label is not None and dataset.label_field is None and label not in dataset.columns:
            raise InvalidInput(
                f"{prefix}dataset {dataset.id!r} is unlabeled (no label column {label!r}; the columns are: "
                f"{', '.join(dataset.columns)}); {labels_for} needs labels: name its label column with "
                "label_field, or upload a labeled dataset"
            )
        if label is not None:
            require_column(table, label, "label")
    except InvalidTable as error:
        raise InvalidInput(f"{prefix}dataset {dataset.id!r} (rows counted from 1): {error}") from None

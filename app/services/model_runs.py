"""Model runs: a trained model over a stored dataset, on a worker. An `evaluation` stores its report;
a batch `prediction` stores its rows (label and scores per input row) in the artifact store under
the run's id, downloadable as JSONL or CSV.

Everything a run reads is checked here, before it is queued: the model and dataset are the tenant's,
the columns exist, and an evaluation's gold labels are labels the model knows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, Model, ModelRun, find, new_id
from app.db.pagination import newest_first
from app.schemas.model_runs import EvaluationCreate, PredictionCreate, RunColumns
from app.schemas.spec import JobSpec, labels_of
from app.services.datasets import CachedRows, check_columns
from app.services.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.services.models import get_model
from app.storage.store import ArtifactStore

Kind = Literal["evaluation", "prediction"]
PREFIXES: dict[str, str] = {"evaluation": "eval", "prediction": "pred"}
OUTPUT_FORMATS = ("jsonl", "csv")

# Sends a run's id to the worker queue (app/queue.py, run_sender).
EnqueueRun = Callable[[str], None]


def create_evaluation(
    session: Session,
    store: ArtifactStore,
    enqueue: EnqueueRun,
    *,
    tenant_id: str,
    model_id: str,
    body: EvaluationCreate,
) -> ModelRun:
    model = get_model(session, tenant_id=tenant_id, model_id=model_id)
    dataset = _tenant_dataset(session, tenant_id, body.dataset)
    spec = JobSpec.model_validate(model.spec)
    columns = _columns(spec, body)
    label_field = body.label_field or spec.label_field
    rows = CachedRows(store)
    check_columns(
        rows,
        dataset,
        text_fields=_text_fields(columns),
        label_field=label_field,
        field="dataset",
        labels_for="an evaluation",
    )
    _check_labels(rows, dataset, model, spec, label_field)
    return _queue(session, enqueue, tenant_id, "evaluation", model, dataset, {**columns, "label_field": label_field})


def create_prediction(
    session: Session, store: ArtifactStore, enqueue: EnqueueRun, *, tenant_id: str, body: PredictionCreate
) -> ModelRun:
    model = find(session, Model, body.model)
    if model is None or model.tenant_id != tenant_id:
        raise InvalidInput(f"model: model {body.model!r} not found")
    dataset = _tenant_dataset(session, tenant_id, body.dataset)
    columns = _columns(JobSpec.model_validate(model.spec), body)
    check_columns(CachedRows(store), dataset, text_fields=_text_fields(columns), label_field=None, field="dataset")
    return _queue(session, enqueue, tenant_id, "prediction", model, dataset, columns)


def _tenant_dataset(session: Session, tenant_id: str, dataset_id: str) -> Dataset:
    dataset = find(session, Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant_id:
        raise InvalidInput(f"dataset: dataset {dataset_id!r} not found")
    return dataset


def _columns(spec: JobSpec, body: RunColumns) -> dict[str, Any]:
    """The text columns the run reads: a pair model reads two, any other one; by default its job's."""
    if spec.text_fields:
        if body.text_field is not None:
            raise InvalidInput(
                f"text_field: the model reads sentence pairs; name its two columns with text_fields "
                f"(its job read {', '.join(spec.text_fields)})"
            )
        return {"text_fields": list(body.text_fields or spec.text_fields)}
    if body.text_fields is not None:
        raise InvalidInput("text_fields: the model reads one text per row; name its column with text_field")
    return {"text_field": body.text_field or spec.text_field}


def _text_fields(columns: dict[str, Any]) -> list[str]:
    return columns.get("text_fields") or [columns["text_field"]]


def _check_labels(rows: CachedRows, dataset: Dataset, model: Model, spec: JobSpec, label_field: str) -> None:
    """Every gold label is one the model predicts: a label it never saw cannot be scored."""
    known = set(model.labels)
    seen = {name for row in rows.read_dataset(dataset.id) for name in labels_of(row[label_field], spec)}
    unknown = sorted(seen - known)
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise InvalidInput(
            f"dataset: {len(unknown)} label(s) in {label_field!r} of dataset {dataset.id!r} are not labels of "
            f"model {model.id!r}: {shown}; its labels are {', '.join(model.labels)}"
        )


def _queue(
    session: Session,
    enqueue: EnqueueRun,
    tenant_id: str,
    kind: Kind,
    model: Model,
    dataset: Dataset,
    columns: dict[str, Any],
) -> ModelRun:
    run = ModelRun(
        id=new_id(PREFIXES[kind]),
        tenant_id=tenant_id,
        kind=kind,
        model_id=model.id,
        dataset_id=dataset.id,
        status="queued",
        columns=columns,
        progress={"rows_done": 0, "rows": dataset.rows, "fraction": 0.0},
        attempts=0,
    )
    session.add(run)
    session.commit()  # the worker must find the row when the message arrives
    try:
        enqueue(run.id)
    except Exception as error:
        session.delete(run)
        session.commit()
        raise Unavailable(f"the job queue is unreachable ({type(error).__name__}); nothing was created") from None
    return run


def get_run(session: Session, *, tenant_id: str, kind: Kind, run_id: str) -> ModelRun:
    run = find(session, ModelRun, run_id)
    if run is None or run.tenant_id != tenant_id or run.kind != kind:
        raise NotFound(f"{kind} {run_id!r} not found")
    return run


def list_runs(
    session: Session, *, tenant_id: str, kind: Kind, limit: int, offset: int, model_id: str | None = None
) -> tuple[list[ModelRun], int]:
    query = select(ModelRun).where(ModelRun.tenant_id == tenant_id, ModelRun.kind == kind)
    if model_id is not None:
        query = query.where(ModelRun.model_id == model_id)
    return newest_first(session, query, ModelRun, limit=limit, offset=offset)


def list_evaluations(
    session: Session, *, tenant_id: str, model_id: str, limit: int, offset: int
) -> tuple[list[ModelRun], int]:
    get_model(session, tenant_id=tenant_id, model_id=model_id)  # 404 for a model that is not the tenant's
    return list_runs(session, tenant_id=tenant_id, kind="evaluation", limit=limit, offset=offset, model_id=model_id)


def delete_prediction(session: Session, store: ArtifactStore, *, tenant_id: str, run_id: str) -> None:
    """The run's row, then its output; a running run would write its output after (409)."""
    run = get_run(session, tenant_id=tenant_id, kind="prediction", run_id=run_id)
    if run.status == "running":
        raise Conflict(f"prediction {run_id!r} is running; delete it once it has finished")
    session.delete(run)
    session.commit()  # the row goes first: a failed commit must not leave a row without its output
    store.delete_dataset(run_id)


def prediction_output(
    session: Session, store: ArtifactStore, *, tenant_id: str, run_id: str, fmt: str
) -> Iterator[str]:
    """A finished batch prediction's rows as JSONL lines or CSV (its text columns, label, score,
    then one `score:<label>` column per label)."""
    run = get_run(session, tenant_id=tenant_id, kind="prediction", run_id=run_id)
    if run.status != "succeeded":
        raise InvalidInput(f"prediction {run_id!r} is {run.status}; its output is ready once it has succeeded")
    rows = store.read_dataset(run.id)
    return _jsonl(rows) if fmt == "jsonl" else _csv(rows, (run.result or {}).get("labels", []))


def _jsonl(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def _csv(rows: list[dict[str, Any]], labels: list[str]) -> Iterator[str]:
    fixed = [key for key in rows[0] if key not in ("scores", "labels")] if rows else ["row", "label", "score"]
    header = fixed + (["labels"] if rows and "labels" in rows[0] else []) + [f"score:{label}" for label in labels]
    yield _csv_line(header)
    for row in rows:
        values = [row[key] for key in fixed]
        if "labels" in row:
            values.append("|".join(row["labels"]))
        yield _csv_line(values + [row["scores"][label] for label in labels])


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if value is None else value for value in values])
    return buffer.getvalue()

"""Run one model run (an evaluation or a batch prediction): claim it, read the model and the
dataset, predict in chunks with progress, then store the report or the rows.

A run keeps no state between chunks but its progress, so a run whose worker was lost is simply run
again from its first row by the next (app/services/sweeper.py re-queues it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import func, literal, update

from app.adaptation import LoadedClassifier
from app.adaptation.ensemble import LoadedEnsemble, load_model
from app.adaptation.evaluation import evaluation_report
from app.catalog import Catalog
from app.config import Settings
from app.db.models import Model, ModelRun, utcnow
from app.db.session import session_scope
from app.logs import job_context
from app.schemas.spec import JobSpec, task_label
from app.serving.abstention import abstain
from app.serving.predictions import format_predictions
from app.storage.store import ArtifactStore, build_store
from worker.draining import draining
from worker.runner import Heartbeat, held_by, requeue

log = logging.getLogger(__name__)

CHUNK_ROWS = 512  # rows per forward call: progress (and the heartbeat) moves at least this often


class Stopping(Exception):
    """The worker was told to stop (worker/draining.py) between two chunks."""


@dataclass(frozen=True)
class ClaimedRun:
    id: str
    attempt: int
    kind: str
    model_id: str
    dataset_id: str
    columns: dict[str, Any]
    spec: JobSpec  # the model's job's: how its label cells read (multi_label delimiter)
    abstain_below: float | None


def run_model_run(settings: Settings, run_id: str) -> None:
    with job_context(run_id):
        run = claim(settings.resolved_database_url, run_id)
        if run is None:
            log.info("model run %s is not queued; nothing to do", run_id)
            return
        with Heartbeat(
            settings.resolved_database_url, run_id, run.attempt, settings.heartbeat_interval_seconds, ModelRun
        ):
            execute(settings, run)


def execute(settings: Settings, run: ClaimedRun) -> None:
    """Predict the dataset's rows, then record the report or store the rows; a failure says why."""
    url = settings.resolved_database_url
    try:
        store = build_store(settings)
        rows = store.read_dataset(run.dataset_id)
        probabilities, loaded = predict_rows(settings, store, run, rows)
        if run.kind == "evaluation":
            gold = [task_label(row[run.columns["label_field"]], run.spec) for row in rows]
            result = evaluation_report(
                loaded.labels, gold, probabilities, multi_label=loaded.multi_label, threshold=loaded.threshold
            )
        else:
            predictions = format_predictions(loaded.labels, probabilities, loaded.multi_label, loaded.threshold)
            store.write_dataset(run.id, output_rows(rows, run.columns, abstain(predictions, run.abstain_below)))
            result = {"rows": len(rows), "labels": loaded.labels, "formats": ["jsonl", "csv"]}
        finish(url, run, "succeeded", result=result)
    except Stopping:
        give_back(settings, run)
    except Exception as error:
        log.exception("model run %s failed", run.id)
        finish(url, run, "failed", error=f"{type(error).__name__}: {error}")


def claim(url: str, run_id: str) -> ClaimedRun | None:
    """queued -> running, atomically: a second delivery of the same run finds nothing to claim."""
    with session_scope(url) as session:
        now = utcnow()
        claimed = session.execute(
            update(ModelRun)
            .where(ModelRun.id == run_id, ModelRun.status == "queued")
            .values(
                status="running",
                started_at=func.coalesce(ModelRun.started_at, literal(now, ModelRun.started_at.type)),
                heartbeat_at=now,
                attempts=ModelRun.attempts + 1,
            )
        ).rowcount
        if not claimed:
            return None
        run = session.get(ModelRun, run_id)
        model = session.get(Model, run.model_id)  # there: deleting a model deletes its runs
        return ClaimedRun(
            run.id,
            run.attempts,
            run.kind,
            run.model_id,
            run.dataset_id,
            dict(run.columns),
            JobSpec.model_validate(model.spec),
            model.spec.get("abstain_below"),
        )


def predict_rows(
    settings: Settings, store: ArtifactStore, run: ClaimedRun, rows: list[dict[str, Any]]
) -> tuple[torch.Tensor, LoadedClassifier | LoadedEnsemble]:
    """The model's probabilities for every row, in order, a chunk at a time with progress."""
    catalog = Catalog(settings)
    store.verify_model(run.model_id)  # fetched to this node and checked: a corrupt model fails the run
    loaded = load_model(store.model_dir(run.model_id), lambda base: catalog.get(base).path)
    texts = [_text(row, run.columns) for row in rows]
    chunks, started = [], time.monotonic()
    for start in range(0, len(texts), CHUNK_ROWS):
        if draining():
            raise Stopping(f"stopped after {start} of {len(texts)} rows")
        chunks.append(loaded.probabilities(texts[start : start + CHUNK_ROWS]))
        report_progress(settings.resolved_database_url, run, min(start + CHUNK_ROWS, len(texts)), len(texts), started)
    if not chunks:
        raise ValueError(f"dataset {run.dataset_id!r} has no rows")
    return torch.cat(chunks), loaded


def _text(row: dict[str, Any], columns: dict[str, Any]) -> str | tuple[str, str]:
    if columns.get("text_fields"):
        first, second = columns["text_fields"]
        return (row[first], row[second])
    return row[columns["text_field"]]


def output_rows(
    rows: list[dict[str, Any]], columns: dict[str, Any], predictions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each input row's number (from 1, as uploads count them) and text columns, then its prediction."""
    text_fields = columns.get("text_fields") or [columns["text_field"]]
    return [
        {"row": number, **{field: row[field] for field in text_fields}, **prediction}
        for number, (row, prediction) in enumerate(zip(rows, predictions, strict=True), start=1)
    ]


def report_progress(url: str, run: ClaimedRun, done: int, total: int, started: float) -> None:
    progress = {
        "rows_done": done,
        "rows": total,
        "fraction": round(done / total, 4) if total else 1.0,
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }
    with session_scope(url) as session:
        mine = held_by(run.id, run.attempt, ModelRun)
        session.execute(update(ModelRun).where(*mine).values(progress=progress, heartbeat_at=utcnow()))


def give_back(settings: Settings, run: ClaimedRun) -> None:
    """Queue the run again, for the next worker to run from its first row."""
    from app.queue import make_celery, run_sender

    send = run_sender(make_celery(settings), settings)
    requeue(settings.resolved_database_url, ModelRun, run.id, run.attempt, lambda: send(run.id))


def finish(
    url: str, run: ClaimedRun, status: str, result: dict[str, Any] | None = None, error: str | None = None
) -> None:
    with session_scope(url) as session:
        session.execute(
            update(ModelRun)
            .where(*held_by(run.id, run.attempt, ModelRun))
            .values(status=status, result=result, error=error, finished_at=utcnow())
        )

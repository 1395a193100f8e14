"""Run one job: claim it, feed its data to the engine, report progress, publish the model.

Imported by the worker only (it loads torch); the API never imports it.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from sqlalchemy import update

from app.adaptation import Cancelled, LabeledTexts, Progress, TaskData, adapt, load_classifier
from app.adaptation.adapt import AdaptationResult, Resources, save_result
from app.adaptation.artifact import read_card
from app.catalog import Catalog
from app.config import Settings
from app.db.models import Job, Model, new_id, utcnow
from app.db.session import session_scope
from app.schemas.spec import JobSpec, labels_of
from app.services.jobs import add_event
from app.storage.artifacts import LocalArtifactStore

log = logging.getLogger(__name__)


class JobCallbacks:
    """Engine callbacks that write to the job's row; the engine already throttles how often."""

    def __init__(self, database_url: str, job_id: str) -> None:
        self.url, self.job_id = database_url, job_id

    def on_progress(self, progress: Progress) -> None:
        eta = None
        if 0 < progress.fraction < 1:
            eta = progress.elapsed_seconds * (1 - progress.fraction) / progress.fraction
        values = {
            "stage": progress.stage,
            "epoch": progress.epoch,
            "epochs": progress.epochs,
            "step": progress.step,
            "total_steps": progress.total_steps,
            "fraction": round(progress.fraction, 4),
            "eta_seconds": None if eta is None else round(eta, 1),
            "loss": progress.loss,
            "learning_rate": progress.learning_rate,
            "elapsed_seconds": round(progress.elapsed_seconds, 2),
            "updated_at": utcnow().isoformat(),
        }
        with session_scope(self.url) as session:
            session.execute(update(Job).where(Job.id == self.job_id).values(progress=values, heartbeat_at=utcnow()))

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        with session_scope(self.url) as session:
            add_event(session, self.job_id, kind, message, data)

    def should_stop(self) -> bool:
        with session_scope(self.url) as session:
            return bool(session.get(Job, self.job_id).cancel_requested)


def claim(database_url: str, job_id: str) -> JobSpec | None:
    """queued -> running, atomically: a second delivery of the same job finds nothing to claim."""
    with session_scope(database_url) as session:
        now = utcnow()
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=now, heartbeat_at=now, attempts=Job.attempts + 1)
        ).rowcount
        if not claimed:
            return None
        add_event(session, job_id, "started", "a worker claimed the job")
        return JobSpec.model_validate(session.get(Job, job_id).spec)


def load_resources(store: LocalArtifactStore, catalog: Catalog, spec: JobSpec) -> Resources:
    """The Fisher texts and source models that the job's regularizers name."""
    resources = Resources()
    for options in spec.optimization.regularizers:
        if options.name == "ewc":
            rows = store.read_dataset(options.fisher_data)
            resources.texts[options.fisher_data] = [row[spec.text_field] for row in rows]
        elif options.name == "source_distillation":
            directory = store.model_dir(options.source_model)
            base = catalog.get(read_card(directory)["base_model"]).path
            resources.source_models[options.source_model] = load_classifier(directory, base).model
    return resources


def load_task_data(store: LocalArtifactStore, spec: JobSpec) -> TaskData:
    def text(row: dict) -> str | tuple[str, str]:
        return tuple(row[f] for f in spec.text_fields) if spec.text_fields else row[spec.text_field]

    def label(row: dict) -> str | tuple[str, ...]:
        names = labels_of(row[spec.label_field], spec)
        return tuple(names) if spec.task == "multi_label" else names[0]

    def read(dataset_id: str | None) -> LabeledTexts | None:
        if dataset_id is None:
            return None
        rows = store.read_dataset(dataset_id)
        return LabeledTexts([text(r) for r in rows], [label(r) for r in rows])

    return TaskData(read(spec.data.train), read(spec.data.validation), read(spec.data.test))


def run_job(settings: Settings, job_id: str) -> None:
    url = settings.resolved_database_url
    spec = claim(url, job_id)
    if spec is None:
        log.info("job %s is not queued; nothing to do", job_id)
        return
    store = LocalArtifactStore(settings.resolved_artifacts_dir)
    try:
        catalog = Catalog(settings)
        result = adapt(
            spec,
            load_task_data(store, spec),
            catalog.get(spec.base_model).path,
            JobCallbacks(url, job_id),
            settings.progress_interval_seconds,
            load_resources(store, catalog, spec),
        )
        publish(url, store, job_id, spec, result)
    except Cancelled as stop:
        finish(url, job_id, "cancelled", None, f"cancelled: {stop}")
    except Exception as error:
        log.exception("job %s failed", job_id)
        reason = f"{type(error).__name__}: {error}"
        finish(url, job_id, "failed", reason, traceback.format_exc(limit=-8))


def publish(url: str, store: LocalArtifactStore, job_id: str, spec: JobSpec, result: AdaptationResult) -> None:
    """Write the artifact, then record model and success in one transaction, unless cancelled meanwhile."""
    model_id = new_id("mdl")
    staging = store.staging_dir(model_id)
    size = save_result(result, spec, staging)
    store.publish_model(model_id)
    with session_scope(url) as session:
        session.add(
            Model(
                id=model_id,
                tenant_id=session.get(Job, job_id).tenant_id,
                job_id=job_id,
                base_model=spec.base_model,
                spec=spec.model_dump(mode="json"),
                labels=result.labels,
                metrics=result.metrics,
                trainable_params=result.trainable_params,
                total_params=result.total_params,
                artifact_bytes=size,
                peak_memory_bytes=result.peak_memory_bytes,
                train_seconds=result.train_seconds,
            )
        )
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
            .values(
                status="succeeded",
                model_id=model_id,
                metrics=result.metrics,
                train_seconds=result.train_seconds,
                finished_at=utcnow(),
                progress=_finished_progress(session, job_id),
            )
        ).rowcount
        if done:
            add_event(
                session,
                job_id,
                "succeeded",
                f"model {model_id} saved ({size} bytes)",
                {"model_id": model_id, "accuracy": result.metrics["accuracy"]},
            )
            return
        session.rollback()
    store.delete_model(model_id)
    finish(url, job_id, "cancelled", None, "cancelled before the model was published")


def _finished_progress(session: Any, job_id: str) -> dict[str, Any]:
    progress = dict(session.get(Job, job_id).progress or {})
    progress.update(stage="done", fraction=1.0, eta_seconds=0.0, updated_at=utcnow().isoformat())
    return progress


def finish(url: str, job_id: str, status: str, error: str | None, detail: str) -> None:
    with session_scope(url) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(status=status, error=error, finished_at=utcnow())
        )
        add_event(session, job_id, status, error or detail, {"detail": detail} if error else None)

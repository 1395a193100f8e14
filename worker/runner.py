"""Run one job: claim it, feed its data to the engine, report progress, publish the model.

The worker's own (it loads torch); the API never imports anything of worker/.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.adaptation import Cancelled, Checkpoints, LabeledTexts, Paused, Progress, TaskData, adapt
from app.adaptation.callbacks import Callbacks
from app.adaptation.ensemble import load_model
from app.adaptation.job import save_result
from app.adaptation.resources import Resources
from app.adaptation.result import AdaptationResult
from app.catalog import Catalog
from app.config import Settings
from app.db.models import Job, Model, new_id, utcnow
from app.db.session import session_scope
from app.logs import job_context
from app.schemas.recipes import with_stage_jobs
from app.schemas.spec import JobSpec, task_label
from app.services.jobs import FINISHED, add_event
from app.storage.store import ArtifactStore, build_store
from worker.distributed_launch import launch_ranks
from worker.draining import draining

log = logging.getLogger(__name__)


def held_by(job_id: str, attempt: int, table: Any = Job) -> tuple[Any, ...]:
    """The row (a job's, or a model run's: `table` ModelRun) is still this attempt's: every
    worker-side write is conditional on it, so a worker that lost its job to the sweeper (or to a
    second delivery) can no longer touch it."""
    return (table.id == job_id, table.status == "running", table.attempts == attempt)


class JobCallbacks:
    """Engine callbacks that write to the job's row; the engine already throttles how often.

    Every write is conditional on the row still being this attempt's (`status` running, `attempts`
    unchanged): a worker that lost its job to the sweeper can no longer touch it, and stops. A
    database that is briefly unreachable costs a progress update, never the job.
    """

    def __init__(self, database_url: str, job_id: str, attempt: int) -> None:
        self.url, self.job_id, self.attempt = database_url, job_id, attempt
        self.pause_requested = False

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
        with _tolerant("progress"), session_scope(self.url) as session:
            mine = held_by(self.job_id, self.attempt)
            session.execute(update(Job).where(*mine).values(progress=values, heartbeat_at=utcnow()))

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        with _tolerant(f"event {kind}"), session_scope(self.url) as session:
            if session.scalar(select(Job.id).where(*held_by(self.job_id, self.attempt))) is not None:
                add_event(session, self.job_id, kind, message, data)  # a lost attempt adds nothing

    def should_stop(self) -> bool:
        """Cancelled, or no longer this attempt's job."""
        with _tolerant("cancellation check"), session_scope(self.url) as session:
            job = session.get(Job, self.job_id)
            # A worker told to stop pauses too, and then queues the job again (train_and_record).
            self.pause_requested = bool(job.pause_requested) or draining()
            return bool(job.cancel_requested) or job.status != "running" or job.attempts != self.attempt
        return False

    def should_pause(self) -> bool:
        return self.pause_requested  # read by should_stop, which the engine asks just before


@contextmanager
def _tolerant(what: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as error:
        log.warning("database unreachable, %s skipped: %s", what, error)


class Heartbeat:
    """Beats for a running job (or model run: `table` ModelRun) from a thread of its own, so that
    long steps without progress (loading, feature caching, evaluation) do not look like a lost worker."""

    def __init__(self, database_url: str, job_id: str, attempt: int, interval: float, table: Any = Job) -> None:
        self.url, self.job_id, self.attempt, self.interval = database_url, job_id, attempt, interval
        self.table = table
        self._stop = threading.Event()
        # In a copy of this context: its log lines carry the job's id too (app/logs.py).
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with _tolerant("heartbeat"), session_scope(self.url) as session:
                mine = held_by(self.job_id, self.attempt, self.table)
                session.execute(update(self.table).where(*mine).values(heartbeat_at=utcnow()))


@dataclass(frozen=True)
class Claim:
    spec: JobSpec
    attempt: int


def claim(database_url: str, job_id: str, placement: dict[str, Any] | None = None) -> Claim | None:
    """queued -> running, atomically: a second delivery of the same job finds nothing to claim.
    `placement` (worker, queue, GPUs; worker/tasks.py) goes into the `started` event."""
    with session_scope(database_url) as session:
        now = utcnow()
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(
                status="running",
                started_at=func.coalesce(Job.started_at, literal(now, Job.started_at.type)),
                heartbeat_at=now,
                attempts=Job.attempts + 1,
                pause_requested=False,
            )
        ).rowcount
        if not claimed:
            return None
        job = session.get(Job, job_id)
        message = f"a worker claimed the job (attempt {job.attempts})"
        add_event(session, job_id, "started", message, {"attempt": job.attempts, **(placement or {})})
        return Claim(stored_spec(job.spec), job.attempts)


def stored_spec(document: dict[str, Any]) -> JobSpec:
    """The spec a job record holds; one stored before stages carried their job gets them now."""
    spec = JobSpec.model_validate(document)
    return with_stage_jobs(spec) if any(stage.job is None for stage in spec.stages) else spec


def load_resources(store: ArtifactStore, catalog: Catalog, spec: JobSpec) -> Resources:
    """What the job references beyond its task data (JobSpec.dataset_refs, model_refs: the datasets
    of its stages, tasks, consistency, distillation and regularizers, its teacher and distillation
    sources), and the base models of its ensemble members."""
    resources = Resources()
    for job in [spec, *(spec.ensemble.members if spec.ensemble else [])]:
        resources.base_models[job.base_model] = catalog.get(job.base_model).path
    for ref in spec.dataset_refs():
        if not ref.task_data and ref.dataset_id not in resources.tables:  # the task data: load_task_data
            resources.tables[ref.dataset_id] = store.read_dataset(ref.dataset_id)
    for ref in spec.model_refs():
        if ref.model_id not in resources.models:
            store.verify_model(ref.model_id)  # fetched to this node, and checked: a corrupt one fails the job
            directory = store.model_dir(ref.model_id)
            resources.models[ref.model_id] = load_model(directory, lambda base: catalog.get(base).path)
    return resources


def load_task_data(store: ArtifactStore, spec: JobSpec) -> TaskData:
    def text(row: dict) -> str | tuple[str, str]:
        return tuple(row[f] for f in spec.text_fields) if spec.text_fields else row[spec.text_field]

    def label(row: dict) -> str | tuple[str, ...]:
        return task_label(row[spec.label_field], spec)

    def read(dataset_id: str | None) -> LabeledTexts | None:
        if dataset_id is None:
            return None
        rows = store.read_dataset(dataset_id)
        return LabeledTexts([text(r) for r in rows], [label(r) for r in rows])

    return TaskData(read(spec.data.train), read(spec.data.validation), read(spec.data.test))


def run_job(settings: Settings, job_id: str, placement: dict[str, Any] | None = None) -> None:
    with job_context(job_id):  # every line the job logs carries its id
        _run_job(settings, job_id, placement)


def _run_job(settings: Settings, job_id: str, placement: dict[str, Any] | None = None) -> None:
    url = settings.resolved_database_url
    claimed = claim(url, job_id, placement)
    if claimed is None:
        log.info("job %s is not queued; nothing to do", job_id)
        return
    spec, attempt = claimed.spec, claimed.attempt
    checkpoints: Checkpoints | None = None
    ended = False
    with Heartbeat(url, job_id, attempt, settings.heartbeat_interval_seconds):
        try:
            # Inside the claim's try: a store that cannot be built (a bad URL, a missing package) fails
            # the job with the reason, instead of leaving it `running` for the sweeper.
            store = build_store(settings)
            remove_ended_checkpoints(url, store)
            checkpoints = Checkpoints(store.checkpoint_dir(job_id), settings.checkpoint_every_steps)
            if spec.compute.world_size > 1:
                ended = run_distributed(settings, job_id, attempt, spec)
            else:
                callbacks = JobCallbacks(url, job_id, attempt)
                ended = train_and_record(settings, store, job_id, attempt, spec, callbacks, checkpoints)
        except Exception as error:
            log.exception("job %s failed", job_id)
            reason = f"{type(error).__name__}: {error}"
            ended = finish(url, job_id, attempt, "failed", reason, traceback.format_exc(limit=-8))
    if ended and checkpoints is not None:  # under this attempt's claim: nobody will resume it
        checkpoints.clear()


def remove_ended_checkpoints(url: str, store: ArtifactStore) -> None:
    """Checkpoints stay on the node that trained, but a job can end elsewhere: cancelled while paused
    (the API removes only its own node's), failed by the sweeper, or resumed and finished by another
    worker. So before it trains, a worker removes what it holds of jobs that have ended (or are gone)."""
    held = store.checkpoint_jobs()
    if not held:
        return
    with session_scope(url) as session:
        unfinished = set(session.scalars(select(Job.id).where(Job.id.in_(held), Job.status.not_in(FINISHED))))
    for job_id in held:
        if job_id not in unfinished:
            log.info("removing the checkpoints of job %s, which has ended", job_id)
            store.delete_checkpoints(job_id)


def train(
    settings: Settings,
    store: ArtifactStore,
    spec: JobSpec,
    callbacks: Callbacks,
    checkpoints: Checkpoints,
    tenant_id: str | None = None,
) -> AdaptationResult:
    """Read what the job names and train it: the whole job in one process, a rank's part in several.
    A frozen encoder's features persist in this node's cache, a folder per tenant."""
    catalog = Catalog(settings)
    resources = load_resources(store, catalog, spec)
    if tenant_id is not None:
        resources.feature_cache = (settings.artifact_cache_dir or settings.var_dir / "cache") / "features" / tenant_id
    return adapt(
        spec,
        load_task_data(store, spec),
        catalog.get(spec.base_model).path,
        callbacks,
        settings.progress_interval_seconds,
        resources,
        checkpoints,
    )


def train_and_record(
    settings: Settings,
    store: ArtifactStore,
    job_id: str,
    attempt: int,
    spec: JobSpec,
    callbacks: Callbacks,
    checkpoints: Checkpoints,
) -> bool:
    """Train, then record how the run ended: published, paused (queued again when the worker is
    stopping) or cancelled. True when the job ended
    under this attempt. What a job's one process does, and rank 0 of a distributed job; any other
    error is the caller's to record (`_run_job`, or for a distributed job the launcher's)."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        tenant_id = session.get(Job, job_id).tenant_id
    try:
        result = train(settings, store, spec, callbacks, checkpoints, tenant_id)
        return publish(url, store, job_id, attempt, spec, result)
    except Paused as pause:
        if draining():
            give_back(settings, job_id, attempt, str(pause), spec)
        else:
            pause_job_run(url, job_id, attempt, str(pause))
        return False
    except Cancelled as stop:
        return finish(url, job_id, attempt, "cancelled", None, f"cancelled: {stop}")


def run_distributed(settings: Settings, job_id: str, attempt: int, spec: JobSpec) -> bool:
    """Train in `spec.compute.world_size` processes (torchrun, distributed_run.py) while this one keeps
    the heartbeat. Rank 0 records how the job ended; a failed rank is recorded here, with its reason.
    True when the job ended under this attempt."""
    url = settings.resolved_database_url
    failure = launch_ranks(settings, job_id, attempt, spec)
    if failure is not None:
        log.error("job %s failed in its training processes: %s", job_id, failure.reason)
        finish(url, job_id, attempt, "failed", failure.reason, failure.detail)
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        return job.attempts == attempt and job.status in FINISHED


def pause_job_run(url: str, job_id: str, attempt: int, message: str) -> None:
    with session_scope(url) as session:
        paused = session.execute(
            update(Job).where(*held_by(job_id, attempt)).values(status="paused", pause_requested=False)
        ).rowcount
        if paused:
            add_event(session, job_id, "paused", f"{message}; a checkpoint holds the run until it is resumed")


def give_back(settings: Settings, job_id: str, attempt: int, message: str, spec: JobSpec) -> None:
    """The worker is stopping: queue the job again on its route. It goes on from the checkpoint just
    written where that checkpoint is (this node; every node with shared checkpoints), and from the
    start elsewhere."""
    from app.queue import job_sender, make_celery

    def note(session: Session) -> None:
        add_event(session, job_id, "requeued", f"the worker is stopping: {message}; queued again to go on from there")

    send = job_sender(make_celery(settings), settings)
    requeue(settings.resolved_database_url, Job, job_id, attempt, lambda: send(job_id, spec.compute), note)


def requeue(
    url: str,
    table: Any,
    row_id: str,
    attempt: int,
    send: Callable[[], None],
    note: Callable[[Session], None] = lambda _session: None,
) -> None:
    """This attempt's row (a job's, or a model run's) back to `queued`, `note` in the same
    transaction, then `send` its message. With the broker down the row goes back to `running`,
    without a heartbeat from now on, and the sweeper queues it once the broker is back."""
    with session_scope(url) as session:
        if not session.execute(update(table).where(*held_by(row_id, attempt, table)).values(status="queued")).rowcount:
            return
        note(session)
    try:
        send()
    except Exception:
        log.exception("could not queue %s again; the sweeper will", row_id)
        with session_scope(url) as session:
            queued = (table.id == row_id, table.status == "queued")
            session.execute(update(table).where(*queued).values(status="running"))


def publish(url: str, store: ArtifactStore, job_id: str, attempt: int, spec: JobSpec, result: AdaptationResult) -> bool:
    """Write the artifact, then record model and success in one transaction, unless the job was
    cancelled (or taken from this attempt) meanwhile. True when the job ended under this attempt."""
    model_id = new_id("mdl")
    staging = store.staging_dir(model_id)
    save_result(result, spec, staging)
    size = store.publish_model(model_id)
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
            .where(*held_by(job_id, attempt), Job.cancel_requested.is_(False))
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
                {"model_id": model_id, "accuracy": result.metrics.get("accuracy")},
            )
            return True
        session.rollback()
    store.delete_model(model_id)
    return finish(url, job_id, attempt, "cancelled", None, "cancelled before the model was published")


def _finished_progress(session: Any, job_id: str) -> dict[str, Any]:
    progress = dict(session.get(Job, job_id).progress or {})
    progress.update(stage="done", fraction=1.0, eta_seconds=0.0, updated_at=utcnow().isoformat())
    return progress


def finish(url: str, job_id: str, attempt: int, status: str, error: str | None, detail: str) -> bool:
    """End the job, if it is still this attempt's; True when it did."""
    with session_scope(url) as session:
        ended = session.execute(
            update(Job).where(*held_by(job_id, attempt)).values(status=status, error=error, finished_at=utcnow())
        ).rowcount
        if ended:
            add_event(session, job_id, status, error or detail, {"detail": detail} if error else None)
        return bool(ended)

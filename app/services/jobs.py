"""Jobs: submit (validate everything, store the expanded spec, enqueue), look up, list, cancel."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.adaptation.architectures import UnsupportedArchitecture
from app.catalog import Catalog, UnknownBaseModel
from app.db.models import Dataset, Job, JobEvent, Model, find, new_id, utcnow
from app.db.pagination import newest_first
from app.schemas.recipes import AUTO, SpecError, describe, expand
from app.schemas.references import DatasetRef, ModelRef
from app.schemas.spec import Compute, JobSpec, labels_of
from app.services.datasets import CachedRows, RowSource, check_columns, get_dataset
from app.services.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.services.webhook_policy import WEBHOOKS_OFF, WebhookPolicy
from app.storage.store import ArtifactStore

FINISHED = ("succeeded", "failed", "cancelled")


class Enqueue(Protocol):
    """Sends a job to the queue its compute routes it to (app/services/routing.py)."""

    def __call__(self, job_id: str, compute: Compute) -> None: ...


def validate_spec(raw: Any, label_counts: dict[str, int] | None = None) -> JobSpec:
    if not isinstance(raw, dict):
        raise InvalidInput("the job spec must be a JSON object")
    try:
        return expand(raw, label_counts)
    except SpecError as error:
        raise InvalidInput(f"invalid job spec: {error}") from None
    except ValidationError as error:
        raise InvalidInput(f"invalid job spec: {describe(error)}") from None


def check_data(session: Session, store: ArtifactStore, spec: JobSpec, tenant_id: str, *, catalog: Catalog) -> None:
    """Everything the spec references (JobSpec.dataset_refs, model_refs) is the tenant's and fits:
    every dataset has the columns its reader needs, train has at least two classes, as have the
    labeled datasets of stages and tasks; every model is one the job can read. Then the student's
    cut and the ensemble members' base models."""
    rows = CachedRows(store)
    classes: list[str] = []
    for ref in spec.dataset_refs():
        dataset = _tenant_dataset(session, tenant_id, ref.path, ref.dataset_id)
        check_columns(
            rows,
            dataset,
            text_fields=list(ref.text_fields),
            label_field=ref.label_field,
            field=ref.path,
            labels_for=ref.labels_for,
        )
        if ref.path == "data.train":
            classes = _classes(rows, dataset, spec)
            if len(classes) < 2:
                raise InvalidInput(
                    f"data.train: dataset {ref.dataset_id!r} has only one class in {spec.label_field!r} "
                    f"({', '.join(classes)}); a classifier needs at least two"
                )
        elif ref.min_classes and ref.label_field is not None:
            _check_classes(rows, dataset, ref)
    for ref in spec.model_refs():
        check_model(session, ref, tenant_id, classes)
    check_student(catalog, spec)
    check_members(catalog, spec)


def _tenant_dataset(session: Session, tenant_id: str, field: str, dataset_id: str) -> Dataset:
    try:
        return get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    except NotFound:
        raise InvalidInput(f"{field}: dataset {dataset_id!r} not found") from None


_COUNTS = {2: "two", 3: "three"}


def _check_classes(rows: RowSource, dataset: Dataset, ref: DatasetRef) -> None:
    assert ref.label_field is not None
    values = (row[ref.label_field] for row in rows.read_dataset(dataset.id)[: ref.limit])
    classes = sorted({value if isinstance(value, str) else "|".join(value) for value in values})
    if len(classes) < ref.min_classes:
        limit = ref.limit
        within = f" among its first {limit} rows (max_examples)" if limit is not None and limit < dataset.rows else ""
        raise InvalidInput(
            f"{ref.path}: dataset {dataset.id!r} has only one class in {ref.label_field!r}{within} "
            f"({', '.join(classes)}); {ref.labels_for} needs at least {_COUNTS.get(ref.min_classes, ref.min_classes)}"
        )


def check_model(session: Session, ref: ModelRef, tenant_id: str, train_classes: list[str]) -> None:
    """A distillation source is the tenant's single model with the job's base model (tokenizer) and
    labels; a teacher is the tenant's single_label model (or ensemble) whose labels cover the
    training labels."""
    model = find(session, Model, ref.model_id)
    if model is None or model.tenant_id != tenant_id:
        raise InvalidInput(f"{ref.path}: model {ref.model_id!r} not found")
    if ref.role == "source":
        if (model.spec or {}).get("ensemble"):
            raise InvalidInput(
                f"{ref.path}: model {model.id!r} is an ensemble; source_distillation anchors to a "
                "single model (distil from an ensemble with `teacher` instead)"
            )
        if model.base_model != ref.base_model or sorted(model.labels) != train_classes:
            raise InvalidInput(
                f"{ref.path}: model {model.id!r} must share the job's base_model "
                f"({ref.base_model!r}) and labels ({', '.join(train_classes)}); it has "
                f"{model.base_model!r} and {', '.join(sorted(model.labels))}"
            )
        return
    task = (model.spec or {}).get("task", "single_label")
    if task != "single_label":
        raise InvalidInput(
            f"{ref.path}: model {model.id!r} is {task}; distillation needs a single_label teacher "
            "(its softmax gives the soft targets)"
        )
    outside = sorted(set(train_classes) - set(model.labels))
    if outside:
        raise InvalidInput(
            f"{ref.path}: the labels {', '.join(map(repr, outside))} of data.train are not among the teacher's "
            f"labels ({', '.join(model.labels)}); a student predicts its teacher's labels"
        )


def check_student(catalog: Catalog, spec: JobSpec) -> None:
    """A student cut from the base model keeps fewer layers than it has."""
    if spec.teacher is None or spec.student_layers is None:
        return
    layers = _layer_count(catalog, spec.base_model)
    if layers is not None and spec.student_layers >= layers:
        raise InvalidInput(
            f"student_layers: {spec.student_layers} must be fewer than the {layers} layers of base_model "
            f"{spec.base_model!r} (a student is the base model cut to fewer layers)"
        )


def _layer_count(catalog: Catalog, base_model: str) -> int | None:
    """The base model's number of layers from its config.json; None where it cannot be read."""
    try:
        layers = catalog.get(base_model).describe().get("layers")
    except (UnknownBaseModel, OSError, ValueError):
        return None
    return layers if isinstance(layers, int) else None


def check_base_model(catalog: Catalog, base_model: str, field: str) -> None:
    """A catalog entry of a model type the engine supports (architectures.py)."""
    try:
        catalog.get(base_model).check_supported()
    except (UnknownBaseModel, UnsupportedArchitecture) as error:
        raise InvalidInput(f"{field}: {error.args[0]}") from None


def check_members(catalog: Catalog, spec: JobSpec) -> None:
    """An ensemble member may train on another base model of the catalog; what it references is
    checked with the job's (its references are the job's, under ensemble.members.N)."""
    if spec.ensemble is None:
        return
    for index, member in enumerate(spec.ensemble.members):
        check_base_model(catalog, member.base_model, f"ensemble.members.{index}.base_model")


def auto_label_counts(session: Session, store: ArtifactStore, tenant_id: str, raw: Any) -> dict[str, int] | None:
    """For a spec whose recipe is `auto`: the rows per label of its training data, which choose the
    recipe (recipes.choose_recipe); None when it names another recipe or the data cannot be read
    (check_data then says what is wrong)."""
    if not isinstance(raw, dict) or raw.get("recipe", AUTO) != AUTO:
        return None
    data, label_field = raw.get("data"), raw.get("label_field", "label")
    train = data.get("train") if isinstance(data, dict) else None
    if not isinstance(train, str) or not isinstance(label_field, str):
        return None
    dataset = find(session, Dataset, train)
    if dataset is None or dataset.tenant_id != tenant_id:
        return None
    if dataset.label_field == label_field and dataset.label_counts is not None:
        return dict(dataset.label_counts)
    try:
        values = [row[label_field] for row in CachedRows(store).read_dataset(dataset.id)]
    except Exception:  # noqa: BLE001 - unreadable data: check_data names the problem
        return None
    return dict(Counter(v if isinstance(v, str) else "|".join(map(str, v)) for v in values))


def _classes(rows: RowSource, dataset: Dataset, spec: JobSpec) -> list[str]:
    if spec.task == "single_label" and dataset.label_field == spec.label_field and dataset.label_counts is not None:
        return sorted(dataset.label_counts)
    return sorted({name for row in rows.read_dataset(dataset.id) for name in labels_of(row[spec.label_field], spec)})


def checked_spec(
    session: Session,
    store: ArtifactStore,
    catalog: Catalog,
    *,
    tenant_id: str,
    raw: Any,
    webhooks: WebhookPolicy = WEBHOOKS_OFF,
    gpu_classes: Sequence[str] = (),
) -> JobSpec:
    """The expanded spec, once everything it names is known to exist, be the tenant's and fit.
    `webhooks` says which webhook URLs the service accepts; by default none. `gpu_classes` are the
    GPU classes the operator runs queues for (THAW_GPU_CLASSES); by default none."""
    spec = validate_spec(raw, auto_label_counts(session, store, tenant_id, raw))
    if spec.webhook is not None:
        webhooks.check(str(spec.webhook.url))
    check_gpu_class(spec.compute, gpu_classes)
    check_base_model(catalog, spec.base_model, "base_model")
    check_data(session, store, spec, tenant_id, catalog=catalog)
    return spec


def create_job(
    session: Session,
    store: ArtifactStore,
    catalog: Catalog,
    enqueue: Enqueue,
    *,
    tenant_id: str,
    raw: Any,
    webhooks: WebhookPolicy = WEBHOOKS_OFF,
    gpu_classes: Sequence[str] = (),
) -> Job:
    spec = checked_spec(
        session, store, catalog, tenant_id=tenant_id, raw=raw, webhooks=webhooks, gpu_classes=gpu_classes
    )
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        status="queued",
        spec=spec.model_dump(mode="json"),
        webhook_url=str(spec.webhook.url) if spec.webhook is not None else None,
    )
    session.add(job)
    add_event(session, job.id, "queued", f"recipe {spec.recipe!r} on {spec.base_model!r}")
    if spec.recipe_choice is not None:
        choice = spec.recipe_choice
        add_event(
            session, job.id, "recipe_chosen", f"auto chose {choice.recipe!r}: {choice.reason}", choice.model_dump()
        )
    session.commit()  # the worker must find the row when the message arrives
    try:
        enqueue(job.id, spec.compute)
    except Exception as error:
        session.delete(job)
        session.commit()
        raise Unavailable(f"the job queue is unreachable ({type(error).__name__}); nothing was created") from None
    return job


def check_gpu_class(compute: Compute, gpu_classes: Sequence[str]) -> None:
    """A GPU class is a queue only the operator's workers of that class consume: a class nobody runs
    would leave the job queued forever."""
    if compute.gpu_class is not None and compute.gpu_class not in gpu_classes:
        offered = f"one of {', '.join(gpu_classes)}" if gpu_classes else "none (THAW_GPU_CLASSES is empty)"
        raise InvalidInput(
            f"compute.gpu_class: {compute.gpu_class!r} is not a GPU class of this service; the classes are {offered}"
        )


def compute_of(stored_spec: dict[str, Any]) -> Compute:
    """The compute of a stored (expanded) spec; specs stored before compute existed ran on the CPU queue."""
    return Compute.model_validate(stored_spec.get("compute") or {})


def add_event(session: Session, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, message=message, data=data))


def get_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    job = find(session, Job, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"job {job_id!r} not found")
    return job


def list_jobs(
    session: Session, *, tenant_id: str, limit: int, offset: int, status: str | None = None
) -> tuple[list[Job], int]:
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Job.status == status)
    return newest_first(session, query, Job, limit=limit, offset=offset)


def list_events(session: Session, *, tenant_id: str, job_id: str) -> list[JobEvent]:
    get_job(session, tenant_id=tenant_id, job_id=job_id)
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def cancel_job(session: Session, store: ArtifactStore, *, tenant_id: str, job_id: str) -> Job:
    """A queued or paused job is cancelled at once; a running one is flagged and its training loop stops."""
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job.status in FINISHED:
        raise Conflict(f"job {job_id!r} is already {job.status}")
    # Conditional updates: the worker may claim or finish the job between our read and write.
    now = utcnow()
    cancelled = session.execute(
        Job.__table__.update()
        .where(Job.id == job_id, Job.status.in_(("queued", "paused")))
        .values(status="cancelled", cancel_requested=True, finished_at=now)
    ).rowcount
    if not cancelled:
        session.execute(
            Job.__table__.update().where(Job.id == job_id, Job.status == "running").values(cancel_requested=True)
        )
    add_event(
        session,
        job_id,
        "cancelled" if cancelled else "cancel_requested",
        "cancelled before it went on" if cancelled else "cancellation requested; stopping at the next step",
    )
    session.commit()
    if cancelled:
        store.delete_checkpoints(job_id)  # a paused job's; nobody resumes a cancelled one
    session.refresh(job)
    return job


def pause_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    """A running job stops at its next step with a checkpoint and frees its worker; a queued one
    simply waits. Either way it ends `paused` until resumed."""
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    at_once = session.execute(
        Job.__table__.update().where(Job.id == job_id, Job.status == "queued").values(status="paused")
    ).rowcount
    flagged = 0
    if not at_once:
        flagged = session.execute(
            Job.__table__.update()
            .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
            .values(pause_requested=True)
        ).rowcount
    if not at_once and not flagged:
        session.rollback()
        session.refresh(job)
        if job.status == "running":
            raise Conflict(f"job {job_id!r} is being cancelled; it cannot be paused")
        raise Conflict(f"job {job_id!r} is {job.status}; only a queued or running job can be paused")
    add_event(
        session,
        job_id,
        "paused" if at_once else "pause_requested",
        "paused before it started" if at_once else "pause requested; stopping at the next step with a checkpoint",
    )
    session.commit()
    session.refresh(job)
    return job


def resume_job(session: Session, enqueue: Enqueue, *, tenant_id: str, job_id: str) -> Job:
    """A paused job is queued again; its worker goes on from the checkpoint it stopped at."""
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    resumed = session.execute(
        Job.__table__.update().where(Job.id == job_id, Job.status == "paused").values(status="queued")
    ).rowcount
    if not resumed:
        session.rollback()
        session.refresh(job)
        raise Conflict(f"job {job_id!r} is {job.status}; only a paused job can be resumed")
    add_event(session, job_id, "resumed_requested", "queued again; it goes on from its checkpoint")
    session.commit()
    try:
        enqueue(job_id, compute_of(job.spec))
    except Exception as error:
        session.execute(Job.__table__.update().where(Job.id == job_id, Job.status == "queued").values(status="paused"))
        session.commit()
        raise Unavailable(f"the job queue is unreachable ({type(error).__name__}); the job stays paused") from None
    session.refresh(job)
    return job

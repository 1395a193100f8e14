from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import PlainValidator

from app.api import sse
from app.api.deps import CatalogDep, SessionDep, SettingsDep, StoreDep, TenantDep
from app.api.rate_limits import JobsLimit
from app.db.models import Job, utcnow
from app.queue import job_sender
from app.schemas.resources import (
    CheckpointsPublic,
    JobCreated,
    JobEventPublic,
    JobEventsPublic,
    JobPublic,
    JobsPublic,
    Timings,
)
from app.schemas.spec import JobSpec
from app.services import jobs as service
from app.services.checkpoints import list_checkpoints
from app.services.webhook_policy import WebhookPolicy

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EXAMPLES = {
    "fine_tuning": {
        "summary": "The default: fine-tuning every weight",
        "value": {"data": {"train": "ds_train", "test": "ds_test"}},
    },
    "recipe_with_overrides": {
        "summary": "A recipe, some of its settings overridden",
        "value": {
            "recipe": "ulmfit",
            "data": {"train": "ds_train"},
            "training": {"epochs": 3, "seed": 1},
            "optimization": {"unfreezing": {"name": "gradual", "thaw_fraction": 0.5}},
        },
    },
    "ensemble": {
        "summary": "Three members differing by seed, served as one model",
        "value": {"recipe": "adapters", "data": {"train": "ds_train"}, "ensemble": {"size": 3}},
    },
}

# The body is documented as the JobSpec, every field with its description; it is received as it was
# sent, since a spec is laid over its recipe (which may set what the body leaves out) before it is
# validated as a whole (app/services/jobs.py), with errors that name the field.
SubmittedSpec = Annotated[
    dict[str, Any],
    PlainValidator(lambda value: value, json_schema_input_type=JobSpec),
    Body(
        description="A job spec (JobSpec), laid over its recipe: any field the recipe sets may be left out; "
        "the job stores the expanded spec.",
        openapi_examples=EXAMPLES,
    ),
]

Status = Literal["queued", "running", "paused", "succeeded", "failed", "cancelled"]


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


def job_public(job: Job) -> JobPublic:
    now = utcnow()
    train_seconds = job.train_seconds
    if train_seconds is None and job.status == "running":
        train_seconds = _seconds(job.started_at, now)
    timings = Timings(
        queued_seconds=_seconds(job.created_at, job.started_at or job.finished_at or now),
        train_seconds=train_seconds,
        total_seconds=_seconds(job.created_at, job.finished_at or now),
    )
    return JobPublic(
        id=job.id,
        status=job.status,
        recipe=job.spec["recipe"],
        base_model=job.spec["base_model"],
        spec=job.spec,
        progress=job.progress,
        metrics=job.metrics,
        timings=timings,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        pause_requested=job.pause_requested,
        model_id=job.model_id,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post("", status_code=202, response_model=JobCreated, dependencies=[JobsLimit])
def create_job(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    catalog: CatalogDep,
    tenant: TenantDep,
    spec: SubmittedSpec,
) -> JobCreated:
    """Validate the spec (laid over its recipe), store it expanded, and queue the job."""
    job = service.create_job(
        session,
        store,
        catalog,
        enqueue_for(request),
        tenant_id=tenant.id,
        raw=spec,
        webhooks=WebhookPolicy.from_settings(request.app.state.settings),
        gpu_classes=request.app.state.settings.gpu_classes,
    )
    return JobCreated(id=job.id, status=job.status)


@router.get("", response_model=JobsPublic)
def list_jobs(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    status: Status | None = None,
) -> JobsPublic:
    """Newest first."""
    items, total = service.list_jobs(session, tenant_id=tenant.id, limit=limit, offset=offset, status=status)
    return JobsPublic(items=[job_public(j) for j in items], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, session: SessionDep, tenant: TenantDep) -> JobPublic:
    return job_public(service.get_job(session, tenant_id=tenant.id, job_id=job_id))


@router.get("/{job_id}/events", response_model=JobEventsPublic)
def list_events(
    job_id: str, request: Request, session: SessionDep, tenant: TenantDep, settings: SettingsDep
) -> JobEventsPublic | StreamingResponse:
    """What happened to the job, oldest first. With `Accept: text/event-stream`, a live stream
    (Server-Sent Events): the events after `Last-Event-ID` (or all), each new one as it happens,
    `progress` when the progress changes, and `end` with the final status once the job has finished."""
    if sse.wants_event_stream(request):
        service.get_job(session, tenant_id=tenant.id, job_id=job_id)  # 404 before the stream starts
        after = sse.last_event_id(request)
        session.close()  # the stream reads with sessions of its own; this one would hold a connection
        return sse.job_event_stream(request, settings.resolved_database_url, job_id, after)
    events = service.list_events(session, tenant_id=tenant.id, job_id=job_id)
    return JobEventsPublic(items=[JobEventPublic.model_validate(e) for e in events])


@router.get("/{job_id}/checkpoints", response_model=CheckpointsPublic)
def checkpoints(job_id: str, session: SessionDep, tenant: TenantDep) -> CheckpointsPublic:
    """One checkpoint per validation at an epoch's end, oldest first, with its step, epoch, training
    loss and metrics; `best` marks the epoch each run kept (a stage, an ensemble member). Only the
    best one's weights are kept, as the model; a job that had no validation rows lists none."""
    return CheckpointsPublic(items=list_checkpoints(session, tenant_id=tenant.id, job_id=job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, store: StoreDep, tenant: TenantDep) -> JobPublic:
    """A queued or paused job ends `cancelled` at once; a running one stops within seconds. A
    cancelled job never produces a model."""
    return job_public(service.cancel_job(session, store, tenant_id=tenant.id, job_id=job_id))


@router.post("/{job_id}/pause", response_model=JobPublic)
def pause_job(job_id: str, session: SessionDep, tenant: TenantDep) -> JobPublic:
    """A running job stops at its next step, writes a checkpoint and frees its worker (`paused`)."""
    return job_public(service.pause_job(session, tenant_id=tenant.id, job_id=job_id))


@router.post("/{job_id}/resume", response_model=JobPublic)
def resume_job(job_id: str, request: Request, session: SessionDep, tenant: TenantDep) -> JobPublic:
    """A paused job is queued again and goes on from its checkpoint."""
    return job_public(service.resume_job(session, enqueue_for(request), tenant_id=tenant.id, job_id=job_id))


def enqueue_for(request: Request) -> service.Enqueue:
    """Sends a job to the Celery queue of its compute route (cpu, gpu, a GPU class)."""
    return job_sender(request.app.state.celery, request.app.state.settings)

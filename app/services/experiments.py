"""Experiments: the jobs of several variants x seeds on one dataset pair, read as one leaderboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.catalog import Catalog
from app.db.models import Experiment, Job, Model, find, new_id
from app.db.pagination import newest_first
from app.schemas.experiments import ExperimentRequest
from app.schemas.recipes import deep_merge
from app.services import jobs
from app.services.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.services.leaderboard import leaderboard
from app.services.webhook_policy import WEBHOOKS_OFF, WebhookPolicy
from app.storage.store import ArtifactStore


def parse(raw: Any) -> ExperimentRequest:
    if not isinstance(raw, dict):
        raise InvalidInput("the experiment must be a JSON object")
    try:
        return ExperimentRequest.model_validate(raw)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or 'experiment'}: {item['msg'].removeprefix('Value error, ')}"
            for item in error.errors()
        ]
        raise InvalidInput(f"invalid experiment: {'; '.join(problems)}") from None


def job_spec(request: ExperimentRequest, partial: dict[str, Any], seed: int) -> dict[str, Any]:
    """`common`, then the shared data and base model, then the variant, then the seed."""
    shared: dict[str, Any] = {"data": request.data}
    if request.base_model is not None:
        shared["base_model"] = request.base_model
    raw = deep_merge(deep_merge(request.common, shared), partial)
    return deep_merge(raw, {"training": {"seed": seed}})


def plan(
    session: Session,
    store: ArtifactStore,
    catalog: Catalog,
    request: ExperimentRequest,
    *,
    tenant_id: str,
    webhooks: WebhookPolicy,
    gpu_classes: Sequence[str] = (),
) -> list[tuple[str, int, dict[str, Any]]]:
    """Every run's (variant, seed, spec), each checked as a job would be: all or nothing."""
    runs = []
    for name, where, partial in request.variants():
        for seed in request.seed_list:
            raw = job_spec(request, partial, seed)
            try:
                jobs.checked_spec(
                    session, store, catalog, tenant_id=tenant_id, raw=raw, webhooks=webhooks, gpu_classes=gpu_classes
                )
            except InvalidInput as error:
                raise InvalidInput(f"{where} ({name}, seed {seed}): {error.message}") from None
            runs.append((name, seed, raw))
    return runs


def create_experiment(
    session: Session,
    store: ArtifactStore,
    catalog: Catalog,
    enqueue: jobs.Enqueue,
    *,
    tenant_id: str,
    raw: Any,
    webhooks: WebhookPolicy = WEBHOOKS_OFF,
    gpu_classes: Sequence[str] = (),
) -> Experiment:
    """Every run is checked before any is queued: a bad variant creates nothing."""
    request = parse(raw)
    planned = plan(session, store, catalog, request, tenant_id=tenant_id, webhooks=webhooks, gpu_classes=gpu_classes)
    created: list[dict[str, Any]] = []
    try:
        for variant, seed, spec in planned:
            job = jobs.create_job(
                session,
                store,
                catalog,
                enqueue,
                tenant_id=tenant_id,
                raw=spec,
                webhooks=webhooks,
                gpu_classes=gpu_classes,
            )
            created.append({"job_id": job.id, "variant": variant, "seed": seed})
    except Unavailable:
        for run in created:  # the queue went away halfway: none of this experiment may run
            jobs.cancel_job(session, store, tenant_id=tenant_id, job_id=run["job_id"])
        raise
    name = request.name or " vs ".join(request.variant_names())
    experiment = Experiment(
        id=new_id("exp"),
        tenant_id=tenant_id,
        name=name[:200],
        request=request.model_dump(mode="json"),
        runs=created,
    )
    session.add(experiment)
    session.commit()
    return experiment


def get_experiment(session: Session, *, tenant_id: str, experiment_id: str) -> Experiment:
    experiment = find(session, Experiment, experiment_id)
    if experiment is None or experiment.tenant_id != tenant_id:
        raise NotFound(f"experiment {experiment_id!r} not found")
    return experiment


def list_experiments(session: Session, *, tenant_id: str, limit: int, offset: int) -> tuple[list[Experiment], int]:
    query = select(Experiment).where(Experiment.tenant_id == tenant_id)
    return newest_first(session, query, Experiment, limit=limit, offset=offset)


def cancel_experiment(session: Session, store: ArtifactStore, *, tenant_id: str, experiment_id: str) -> None:
    """Cancel every run that has not finished; finished runs keep their models."""
    experiment = get_experiment(session, tenant_id=tenant_id, experiment_id=experiment_id)
    for run in experiment.runs:
        try:
            jobs.cancel_job(session, store, tenant_id=tenant_id, job_id=run["job_id"])
        except (Conflict, NotFound):
            pass  # already finished, or deleted with its tenant


def status_of(statuses: list[str]) -> str:
    if any(s not in jobs.FINISHED for s in statuses):
        return "running"
    if len(set(statuses)) == 1:
        return statuses[0]
    return "partial"


def summary(session: Session, experiment: Experiment) -> dict[str, Any]:
    """The experiment with each run's status and the leaderboard, read fresh from its jobs."""
    ids = [run["job_id"] for run in experiment.runs]
    by_id = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}
    model_ids = [job.model_id for job in by_id.values() if job.model_id]
    models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(model_ids)))} if model_ids else {}
    runs = [{**run, "status": by_id[run["job_id"]].status} for run in experiment.runs if run["job_id"] in by_id]
    variants: dict[str, list[Job]] = {}
    for run in experiment.runs:
        if run["job_id"] in by_id:
            variants.setdefault(run["variant"], []).append(by_id[run["job_id"]])
    return {
        "id": experiment.id,
        "name": experiment.name,
        "status": status_of([run["status"] for run in runs]) if runs else "cancelled",
        "created_at": experiment.created_at,
        "seeds": experiment.request["seeds"],
        "request": experiment.request,
        "runs": runs,
        "leaderboard": leaderboard(variants, models),
    }

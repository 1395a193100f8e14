from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from app.api.deps import CatalogDep, SessionDep, StoreDep, TenantDep
from app.api.rate_limits import JobsLimit
from app.api.routes.jobs import enqueue_for
from app.schemas.resources import ExperimentPublic, ExperimentsPublic
from app.services import experiments as service
from app.services.webhook_policy import WebhookPolicy

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.post("", status_code=202, response_model=ExperimentPublic, dependencies=[JobsLimit])
def create_experiment(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    catalog: CatalogDep,
    tenant: TenantDep,
    body: Annotated[
        dict[str, Any],
        Body(
            description="One dataset pair (`data`), `recipes` and/or `specs`, and `seeds`: every variant runs "
            "once per seed. Every job is checked before any is queued.",
            examples=[{"data": {"train": "ds_...", "test": "ds_..."}, "recipes": ["fine_tuning", "adapters"]}],
        ),
    ],
) -> ExperimentPublic:
    """Queue the experiment's jobs; its leaderboard fills in as they finish."""
    settings = request.app.state.settings
    experiment = service.create_experiment(
        session,
        store,
        catalog,
        enqueue_for(request),
        tenant_id=tenant.id,
        raw=body,
        webhooks=WebhookPolicy.from_settings(settings),
        gpu_classes=settings.gpu_classes,
    )
    return ExperimentPublic.model_validate(service.summary(session, experiment))


@router.get("", response_model=ExperimentsPublic)
def list_experiments(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ExperimentsPublic:
    """Newest first."""
    items, total = service.list_experiments(session, tenant_id=tenant.id, limit=limit, offset=offset)
    summaries = [ExperimentPublic.model_validate(service.summary(session, e)) for e in items]
    return ExperimentsPublic(items=summaries, total=total, limit=limit, offset=offset)


@router.get("/{experiment_id}", response_model=ExperimentPublic)
def get_experiment(experiment_id: str, session: SessionDep, tenant: TenantDep) -> ExperimentPublic:
    """The runs' statuses and the leaderboard: mean and spread of each metric, train time, trainable
    parameters and memory per variant."""
    experiment = service.get_experiment(session, tenant_id=tenant.id, experiment_id=experiment_id)
    return ExperimentPublic.model_validate(service.summary(session, experiment))


@router.post("/{experiment_id}/cancel", response_model=ExperimentPublic)
def cancel_experiment(experiment_id: str, session: SessionDep, store: StoreDep, tenant: TenantDep) -> ExperimentPublic:
    """Cancel every run that has not finished."""
    service.cancel_experiment(session, store, tenant_id=tenant.id, experiment_id=experiment_id)
    experiment = service.get_experiment(session, tenant_id=tenant.id, experiment_id=experiment_id)
    return ExperimentPublic.model_validate(service.summary(session, experiment))

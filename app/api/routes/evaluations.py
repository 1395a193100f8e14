"""Evaluations: a trained model scored on a labeled dataset, on a worker (app/services/model_runs.py)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import SessionDep, StoreDep, TenantDep
from app.queue import run_sender
from app.schemas.model_runs import EvaluationCreate, ModelRunPublic, ModelRunsPublic
from app.services import model_runs as service

router = APIRouter(tags=["evaluations"])


@router.post("/v1/models/{model_id}/evaluations", status_code=202, response_model=ModelRunPublic)
def create_evaluation(
    model_id: str, body: EvaluationCreate, request: Request, session: SessionDep, store: StoreDep, tenant: TenantDep
) -> ModelRunPublic:
    """Score the model on a labeled dataset: accuracy, macro-F1, per-class metrics, the confusion
    matrix and (one label per text) the ECE, computed on a worker; poll the evaluation for its result."""
    enqueue = run_sender(request.app.state.celery, request.app.state.settings)
    run = service.create_evaluation(session, store, enqueue, tenant_id=tenant.id, model_id=model_id, body=body)
    return ModelRunPublic.model_validate(run)


@router.get("/v1/models/{model_id}/evaluations", response_model=ModelRunsPublic)
def list_evaluations(
    model_id: str,
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ModelRunsPublic:
    """The model's evaluations, newest first."""
    items, total = service.list_evaluations(session, tenant_id=tenant.id, model_id=model_id, limit=limit, offset=offset)
    return ModelRunsPublic(items=items, total=total, limit=limit, offset=offset)


@router.get("/v1/evaluations/{evaluation_id}", response_model=ModelRunPublic)
def get_evaluation(evaluation_id: str, session: SessionDep, tenant: TenantDep) -> ModelRunPublic:
    return ModelRunPublic.model_validate(
        service.get_run(session, tenant_id=tenant.id, kind="evaluation", run_id=evaluation_id)
    )

"""Batch predictions: a trained model over a stored dataset, on a worker, its rows downloadable
(app/services/model_runs.py)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from app.api.deps import SessionDep, StoreDep, TenantDep
from app.queue import run_sender
from app.schemas.model_runs import ModelRunPublic, ModelRunsPublic, PredictionCreate
from app.services import model_runs as service

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


@router.post("", status_code=202, response_model=ModelRunPublic)
def create_prediction(
    body: PredictionCreate, request: Request, session: SessionDep, store: StoreDep, tenant: TenantDep
) -> ModelRunPublic:
    """Predict every row of a dataset with a model on a worker; poll it for progress, then download
    its output (label, score and every label's score per row)."""
    enqueue = run_sender(request.app.state.celery, request.app.state.settings)
    return ModelRunPublic.model_validate(
        service.create_prediction(session, store, enqueue, tenant_id=tenant.id, body=body)
    )


@router.get("", response_model=ModelRunsPublic)
def list_predictions(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ModelRunsPublic:
    """Newest first."""
    items, total = service.list_runs(session, tenant_id=tenant.id, kind="prediction", limit=limit, offset=offset)
    return ModelRunsPublic(items=items, total=total, limit=limit, offset=offset)


@router.get("/{prediction_id}", response_model=ModelRunPublic)
def get_prediction(prediction_id: str, session: SessionDep, tenant: TenantDep) -> ModelRunPublic:
    return ModelRunPublic.model_validate(
        service.get_run(session, tenant_id=tenant.id, kind="prediction", run_id=prediction_id)
    )


@router.get("/{prediction_id}/output", response_class=StreamingResponse)
def prediction_output(
    prediction_id: str,
    session: SessionDep,
    store: StoreDep,
    tenant: TenantDep,
    format: Annotated[
        Literal["jsonl", "csv"], Query(description="`jsonl`: one object per row; `csv`: a table")
    ] = "jsonl",
) -> StreamingResponse:
    """A finished batch prediction's rows, in input order: the row's number, its text columns, the
    label (null under the model's abstain_below), its score and every label's score."""
    lines = service.prediction_output(session, store, tenant_id=tenant.id, run_id=prediction_id, fmt=format)
    filename = f"{prediction_id}.{format}"
    return StreamingResponse(
        lines, media_type=MEDIA_TYPES[format], headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.delete("/{prediction_id}", status_code=204)
def delete_prediction(prediction_id: str, session: SessionDep, store: StoreDep, tenant: TenantDep) -> None:
    """The run and its output; a running one is let finish first (409)."""
    service.delete_prediction(session, store, tenant_id=tenant.id, run_id=prediction_id)

import asyncio
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from app.api.deps import (
    CatalogDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    TenantDep,
    bearer_key,
    get_model_cache,
    get_serving,
    unauthorized,
)
from app.api.rate_limits import spend
from app.catalog import Catalog
from app.config import Settings
from app.db.session import get_engine
from app.schemas.resources import ModelPublic, ModelsPublic, PredictRequest, PredictResponse
from app.services import models as service
from app.services.errors import InvalidInput, NotFound, RateLimited
from app.services.exports import ExportFormat, export_archive
from app.services.models import Servable
from app.serving.abstention import abstain
from app.serving.errors import Overloaded, Unloaded
from app.storage.store import ArtifactStore

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsPublic)
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ModelsPublic:
    items, total = service.list_models(session, tenant_id=tenant.id, limit=limit, offset=offset)
    return ModelsPublic(items=items, total=total, limit=limit, offset=offset)


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(model_id: str, session: SessionDep, tenant: TenantDep) -> ModelPublic:
    """The model's card: base model, expanded spec, labels, metrics and trade-offs."""
    return ModelPublic.model_validate(service.get_model(session, tenant_id=tenant.id, model_id=model_id))


@router.delete("/{model_id}", status_code=204)
def delete_model(
    model_id: str,
    session: SessionDep,
    store: StoreDep,
    tenant: TenantDep,
    cache: Annotated[Any, Depends(get_model_cache)],
) -> None:
    service.delete_model(session, store, tenant_id=tenant.id, model_id=model_id)
    cache.evict(model_id)


@router.get("/{model_id}/export", response_class=FileResponse)
def export_model(
    model_id: str,
    session: SessionDep,
    store: StoreDep,
    catalog: CatalogDep,
    tenant: TenantDep,
    format: Annotated[ExportFormat, Query(description="`hf`: a Hugging Face folder; `onnx`: an ONNX graph")] = "hf",
) -> FileResponse:
    """The model as a tar.gz that runs without Thaw: a Hugging Face folder (LoRA merged;
    `AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`) or an ONNX
    graph with its tokenizer; an ensemble as a folder of its members and a manifest."""
    archive = export_archive(session, store, catalog, tenant_id=tenant.id, model_id=model_id, fmt=format)
    return FileResponse(
        archive,
        media_type="application/gzip",
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, archive.parent, ignore_errors=True),
    )


async def servable_model(
    request: Request,
    model_id: str,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Servable:
    """Authenticate (401), spend a predict token (429), find the caller's model (404): one query in
    one threadpool hop, the predict route's whole database work."""
    key = bearer_key(authorization)
    if key is None:
        raise unauthorized()
    engine = get_engine(settings.resolved_database_url)
    live, servable = await run_in_threadpool(service.find_servable, engine, key=key, model_id=model_id)
    if not live:
        raise unauthorized()
    spend(request, "predict", key)
    if servable is None:
        raise NotFound(f"model {model_id!r} not found")
    return servable


@router.post("/{model_id}/predict", response_model=PredictResponse)
async def predict(
    request: Request,
    body: PredictRequest,
    model: Annotated[Servable, Depends(servable_model)],
    store: StoreDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    serving: Annotated[Any, Depends(get_serving)],
) -> PredictResponse:
    """Labels and class probabilities for each input text, in order. Concurrent requests share
    forward passes (the micro-batcher); the event loop never waits on the model."""
    with request.app.state.metrics.timing_predict():
        return await answer(body, model, store, settings, catalog, serving)


async def answer(
    body: PredictRequest, model: Servable, store: ArtifactStore, settings: Settings, catalog: Catalog, serving: Any
) -> PredictResponse:
    """The predict route's work, which `predict` times."""
    check_inputs(body, settings)
    if any(isinstance(text, tuple) != model.takes_pairs for text in body.inputs):
        shape = "[first, second] pairs" if model.takes_pairs else "strings"
        raise InvalidInput(f"inputs: model {model.id!r} takes {shape}")
    directory, base = store.model_dir(model.id), catalog.get(model.base_model).path

    async def predict_once() -> list:
        served = serving.cache.peek(model.id)
        if served is None:  # loading reads and checks files: off the event loop
            verify = lambda: store.verify_model(model.id)  # noqa: E731
            members_base = lambda name: catalog.get(name).path  # noqa: E731 - an ensemble's members' bases
            served = await asyncio.wrap_future(serving.load(model.id, directory, base, verify, members_base))
        try:
            future = serving.batcher.submit(served, body.inputs)
        except Overloaded as error:
            raise RateLimited(str(error), retry_after=1) from None
        return await asyncio.wrap_future(future)

    below = body.abstain_below if body.abstain_below is not None else model.abstain_below
    try:
        return PredictResponse(predictions=abstain(await predict_once(), below))
    except Unloaded:  # evicted while the request waited: loaded again, once
        return PredictResponse(predictions=abstain(await predict_once(), below))


def check_inputs(body: PredictRequest, settings: Settings) -> None:
    if len(body.inputs) > settings.max_predict_inputs:
        raise InvalidInput(f"inputs: at most {settings.max_predict_inputs} texts per request, got {len(body.inputs)}")
    for index, text in enumerate(body.inputs):
        length = len(text) if isinstance(text, str) else sum(map(len, text))
        if length > settings.max_text_chars:
            raise InvalidInput(
                f"inputs.{index}: {length} characters is over the limit of {settings.max_text_chars} per text"
            )

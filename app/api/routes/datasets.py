from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from app.api.deps import SessionDep, SettingsDep, StoreDep, TenantDep
from app.schemas.resources import DatasetPublic, DatasetsPublic
from app.services import datasets as service
from app.services.errors import InvalidInput, TooLarge

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


async def read_upload(request: Request, file: UploadFile, limit: int) -> bytes:
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit + 64 * 1024:  # room for the multipart envelope
        raise TooLarge(f"upload of {declared} bytes is over the limit of {limit} bytes")
    raw = await file.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"the file is over the limit of {limit} bytes")
    return raw


@router.post("", status_code=201, response_model=DatasetPublic)
async def upload_dataset(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    tenant: TenantDep,
    file: UploadFile,
    name: Annotated[str | None, Form(max_length=200)] = None,
    text_field: Annotated[str, Form(min_length=1)] = "text",
    label_field: Annotated[str | None, Form(min_length=1)] = None,
) -> DatasetPublic:
    """Upload CSV, TSV or JSONL with a header (or keys). Without a label column it is unlabeled."""
    if not file.filename:
        raise InvalidInput("the multipart field `file` must carry a file with a filename")
    raw = await read_upload(request, file, settings.max_upload_bytes)
    # Parsing a large table is CPU work: keep it off the event loop.
    dataset = await run_in_threadpool(
        service.create_dataset,
        session,
        store,
        tenant_id=tenant.id,
        name=name or file.filename,
        filename=file.filename,
        raw=raw,
        text_field=text_field,
        label_field=label_field,
    )
    session.commit()
    return DatasetPublic.model_validate(dataset)


@router.get("", response_model=DatasetsPublic)
def list_datasets(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> DatasetsPublic:
    items, total = service.list_datasets(session, tenant_id=tenant.id, limit=limit, offset=offset)
    return DatasetsPublic(items=items, total=total, limit=limit, offset=offset)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: SessionDep, tenant: TenantDep) -> DatasetPublic:
    return DatasetPublic.model_validate(service.get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id))


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, session: SessionDep, store: StoreDep, tenant: TenantDep) -> None:
    service.delete_dataset(session, store, tenant_id=tenant.id, dataset_id=dataset_id)

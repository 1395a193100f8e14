from fastapi import APIRouter

from app.api.deps import CatalogDep, TenantDep
from app.schemas.resources import BaseModelPublic, BaseModelsPublic

router = APIRouter(prefix="/v1/base-models", tags=["base models"])


@router.get("", response_model=BaseModelsPublic)
def list_base_models(_tenant: TenantDep, catalog: CatalogDep) -> BaseModelsPublic:
    """The pretrained encoders a job may name as `base_model`."""
    return BaseModelsPublic(items=[BaseModelPublic(**entry.describe()) for entry in catalog.all()])

"""Bodies of the routes that run a trained model over a stored dataset on a worker: evaluations
(POST /v1/models/{id}/evaluations) and batch predictions (POST /v1/predictions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.resources import Page, Public

RunStatus = Literal["queued", "running", "succeeded", "failed"]


class RunColumns(BaseModel):
    """Which columns of the dataset the model reads; by default the ones its job read."""

    model_config = ConfigDict(extra="forbid")
    text_field: str | None = Field(None, description="The text column; null: the model's job's text_field.")
    text_fields: tuple[str, str] | None = Field(
        None, description="A sentence-pair model's two text columns; null: the model's job's text_fields."
    )


class EvaluationCreate(RunColumns):
    dataset: str = Field(description="A labeled dataset of the tenant, its labels among the model's.")
    label_field: str | None = Field(None, description="The label column; null: the model's job's label_field.")


class PredictionCreate(RunColumns):
    model: str = Field(description="The trained model to predict with.")
    dataset: str = Field(description="A dataset of the tenant, labeled or not: its text columns are read.")


class RunProgress(Public):
    rows_done: int
    rows: int
    fraction: float
    elapsed_seconds: float | None = None


class ModelRunPublic(Public):
    id: str
    kind: Literal["evaluation", "prediction"]
    status: RunStatus
    model_id: str
    dataset_id: str
    columns: dict[str, Any] = Field(description="The columns read: text_field or text_fields, and label_field.")
    progress: RunProgress | None
    result: dict[str, Any] | None = Field(
        description="An evaluation's report (accuracy, macro_f1, per_class, confusion_matrix, ece, examples); "
        "a prediction's row count and the formats its output downloads in."
    )
    error: str | None = Field(description="Why the run failed.")
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ModelRunsPublic(Page):
    items: list[ModelRunPublic]

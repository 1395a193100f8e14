"""Request and response bodies of the HTTP API (one pattern per resource: XPublic, XsPublic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Public):
    total: int = Field(description="How many items match, over all pages.")
    limit: int
    offset: int


class BaseModelPublic(Public):
    id: str
    architecture: str | None
    model_type: str | None
    supported: bool = Field(description="Whether jobs can train on it: its model_type is one the engine supports.")
    layers: int | None
    hidden_size: int | None
    vocab_size: int | None
    max_position_embeddings: int | None
    source: Literal["local", "object storage"] = Field(
        "local", description="Where the entry's files are: a local folder, or object storage fetched into each node."
    )


class BaseModelsPublic(Public):
    items: list[BaseModelPublic]


class DatasetPublic(Public):
    id: str
    name: str
    filename: str
    format: str
    rows: int
    columns: list[str]
    text_field: str
    label_field: str | None = Field(description="Label column; null for an unlabeled dataset.")
    label_counts: dict[str, int] | None
    size_bytes: int
    sha256: str
    created_at: datetime


class DatasetsPublic(Page):
    items: list[DatasetPublic]


class JobCreated(Public):
    id: str
    status: str


class Timings(Public):
    queued_seconds: float | None
    train_seconds: float | None
    total_seconds: float | None


class JobPublic(Public):
    id: str
    status: str = Field(description="queued, running, paused, succeeded, failed or cancelled.")
    recipe: str
    base_model: str
    spec: dict[str, Any] = Field(description="The fully expanded spec the job runs with.")
    progress: dict[str, Any] | None
    metrics: dict[str, Any] | None
    timings: Timings
    attempts: int = Field(description="Tries so far; a job whose worker was lost goes on from its checkpoint.")
    cancel_requested: bool
    pause_requested: bool
    model_id: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobsPublic(Page):
    items: list[JobPublic]


class JobEventPublic(Public):
    id: int
    at: datetime
    kind: str
    message: str
    data: dict[str, Any] | None


class JobEventsPublic(Public):
    items: list[JobEventPublic]


class CheckpointPublic(Public):
    step: int = Field(description="Optimizer steps done when the epoch ended.")
    epoch: int
    stage: int | None = Field(description="The stage (from 1) of a staged job; null otherwise.")
    member: int | None = Field(description="The ensemble member (from 1); null otherwise.")
    train_loss: float | None = Field(description="The mean training loss of the epoch's steps (main task).")
    metrics: dict[str, float] = Field(description="Validation metrics: accuracy, macro_f1 (micro_f1, threshold).")
    best: bool = Field(description="The epoch its run kept: the best by eval_metric, the one the model holds.")
    at: datetime


class CheckpointsPublic(Public):
    items: list[CheckpointPublic]


class ModelPublic(Public):
    id: str
    job_id: str
    base_model: str
    spec: dict[str, Any]
    labels: list[str]
    metrics: dict[str, Any]
    trainable_params: int
    total_params: int
    artifact_bytes: int
    peak_memory_bytes: int | None
    train_seconds: float | None
    created_at: datetime


class ModelsPublic(Page):
    items: list[ModelPublic]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str | tuple[str, str]] = Field(
        min_length=1, description="Texts to classify; for a sentence-pair model, [first, second] pairs."
    )
    abstain_below: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Return label null for a prediction whose top score is under this; null: the model's own "
        "(its job's abstain_below), if any.",
    )


class Prediction(Public):
    label: str | None = Field(
        description="The most probable label; null when its score is under the abstain_below threshold."
    )
    score: float
    scores: dict[str, float] = Field(description="Every label's probability.")
    labels: list[str] | None = Field(None, description="multi_label models: every label above the threshold.")


class PredictResponse(Public):
    predictions: list[Prediction]


class Spread(Public):
    mean: float
    std: float | None = Field(description="Sample standard deviation over the runs; null for one run.")
    values: list[float]


class LeaderboardRow(Public):
    variant: str
    recipe: str | None
    runs: int
    finished: int = Field(description="Runs that succeeded; only they are summarised.")
    failed: int
    evaluated_on: str = Field(description="test when every finished run has test metrics, else validation.")
    metrics: dict[str, Spread] = Field(description="accuracy, macro_f1 (micro_f1 for multi-label) over the runs.")
    ranked_by: str | None = Field(
        None,
        description="The metric the leaderboard ranks by: micro_f1 for multi-label runs (their accuracy is subset "
        "accuracy), else accuracy; None before a run finishes.",
    )
    train_seconds: Spread | None
    trainable_params: int | None
    total_params: int | None
    peak_memory_bytes: Spread | None
    artifact_bytes: int | None


class ExperimentRun(Public):
    job_id: str
    variant: str
    seed: int
    status: str


class ExperimentPublic(Public):
    id: str
    name: str
    status: str = Field(description="running, succeeded, failed, cancelled, or partial (finished, mixed).")
    created_at: datetime
    seeds: list[int]
    request: dict[str, Any] = Field(description="The experiment as submitted, seeds spelt out.")
    runs: list[ExperimentRun]
    leaderboard: list[LeaderboardRow] = Field(description="One row per variant, best mean first.")


class ExperimentsPublic(Page):
    items: list[ExperimentPublic]

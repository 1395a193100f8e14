"""The adaptation job spec: what a client submits, and what the job record stores fully expanded.

Names follow the NAACL 2019 "Transfer Learning in NLP" tutorial as mapped in DESIGN.md. Every
choice that names a registered engine unit (pooling, head, schedule, ...) is a Literal of the
registry's names; tests/adaptation/test_registry.py checks that the two lists agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataRefs(Strict):
    train: str = Field(description="Id of the labeled training dataset.")
    validation: str | None = Field(
        None,
        description="Id of the validation dataset; without it a stratified `validation_fraction` "
        "of train is held out (and reported) instead.",
    )
    test: str | None = Field(
        None, description="Optional test dataset, evaluated once with the kept model and reported."
    )
    validation_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share of train held out when no validation set is given."
    )


class ModelConfig(Strict):
    pooling: Literal["mean", "cls", "max"] = Field("mean", description="How token vectors become one vector per text.")
    head: Literal["linear"] = Field("linear", description="Task layer on top of the pooled vector.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the head.")


class OptimizationConfig(Strict):
    train: Literal["all", "head_only"] = Field(
        "all",
        description="Which weights train: `all` (fine-tuning) or `head_only` (frozen encoder: feature extraction).",
    )
    lr_schedule: Literal["linear_warmup", "constant"] = Field(
        "linear_warmup", description="Learning-rate schedule over the whole run."
    )
    warmup_fraction: float = Field(0.06, ge=0, lt=1, description="Share of steps spent warming up (linear_warmup).")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW decoupled weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null for none.")


class TrainingConfig(Strict):
    epochs: int = Field(3, ge=1, le=100, description="Passes over the training data.")
    batch_size: int = Field(32, ge=1, le=1024, description="Examples per optimisation step.")
    learning_rate: float = Field(1e-4, gt=0, le=1, description="Peak learning rate (AdamW).")
    max_length: int = Field(64, ge=4, le=512, description="Tokens kept per text (longer are cut).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed for split, init, order and dropout.")
    eval_metric: Literal["accuracy", "macro_f1"] = Field(
        "accuracy", description="Validation metric that picks the kept epoch."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement; null: never."
    )


class JobSpec(Strict):
    base_model: str = Field("minilm-l6", description="Catalog id of the pretrained encoder.")
    recipe: str = Field("fine_tuning", description="Named recipe the rest of the spec overrides.")
    data: DataRefs
    text_field: str = Field("text", min_length=1, description="Column holding the text.")
    label_field: str = Field("label", min_length=1, description="Column holding the label.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimization: OptimizationConfig = Field(default_factory=OptimizationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _fields_differ(self) -> JobSpec:
        if self.text_field == self.label_field:
            raise ValueError("text_field and label_field must name different columns")
        return self

"""`adapt(spec, data, base_model_path, callbacks) -> AdaptationResult`: one adaptation job, no server needed."""

from __future__ import annotations

import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from app.adaptation.artifact import save_classifier
from app.adaptation.callbacks import Callbacks, SilentCallbacks
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.data import LabeledTexts, TaskData, stratified_split
from app.adaptation.inference import predict_proba
from app.adaptation.model import TextClassifier, count_parameters, load_pretrained_encoder
from app.adaptation.precision import allow_tf32
from app.adaptation.precision import resolve as resolve_precision
from app.adaptation.regularizers import REGULARIZERS, Regularizer, RegularizerContext
from app.adaptation.strategies import STRATEGIES
from app.adaptation.tasks import TASKS, label_names
from app.adaptation.trainer import Trainer, evaluate
from app.schemas.spec import JobSpec


class InvalidTaskData(ValueError):
    """The data cannot train this task (one class, labels unseen in training, ...)."""


class BaseModelUnloadable(RuntimeError):
    """The base model's directory does not hold a loadable encoder and tokenizer."""


def load_base(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        return load_pretrained_encoder(path), AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise BaseModelUnloadable(f"cannot load the base model: {type(error).__name__}: {error}") from error


@dataclass
class Resources:
    """Inputs beyond the task data that some units need, resolved by whoever runs the engine."""

    texts: dict[str, list[str]] = field(default_factory=dict)  # dataset id -> texts (EWC's Fisher data)
    source_models: dict[str, TextClassifier] = field(default_factory=dict)  # model id -> model


@dataclass
class AdaptationResult:
    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    metrics: dict[str, Any]
    threshold: float | None
    trainable_params: int
    total_params: int
    train_seconds: float
    peak_memory_bytes: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def split_validation(spec: JobSpec, data: TaskData) -> tuple[LabeledTexts, LabeledTexts | None, bool]:
    """(train, validation, held_out): without a validation set, hold out a stratified share of train,
    unless that share is 0 (every row trains, there is no validation)."""
    if data.validation is not None or spec.data.validation_fraction == 0:
        return data.train, data.validation, False
    train, validation = stratified_split(data.train, spec.data.validation_fraction, spec.training.seed)
    return train, validation, True


def check_labels(task: str, train: LabeledTexts, others: dict[str, LabeledTexts | None]) -> list[str]:
    labels = label_names(task, train.labels)
    if len(labels) < 2:
        raise InvalidTaskData(f"the training data has only one class ({labels[0]!r}); need at least two")
    for name, data in others.items():
        unseen = sorted(set(label_names(task, data.labels)) - set(labels)) if data is not None else []
        if unseen:
            raise InvalidTaskData(f"{name} has labels that train does not: {', '.join(map(repr, unseen[:10]))}")
    return labels


def build_regularizers(spec: JobSpec, context: RegularizerContext) -> list[Regularizer]:
    return [REGULARIZERS.get(options.name)(options, context) for options in spec.optimization.regularizers]


def adapt(
    spec: JobSpec,
    data: TaskData,
    base_model_path: Path,
    callbacks: Callbacks | None = None,
    progress_interval: float = 1.0,
    resources: Resources | None = None,
    checkpoints: Checkpoints | None = None,
) -> AdaptationResult:
    """Train one job. With `checkpoints`, the run writes them as it goes and, when one exists
    already (a run of the same spec and data that died or paused), goes on from it."""
    callbacks = callbacks or SilentCallbacks()
    train, validation, held_out = split_validation(spec, data)
    labels = check_labels(spec.task, train, {"validation": validation, "test": data.test})
    task = TASKS.get(spec.task)(labels, spec.threshold)
    seed_everything(spec.training.seed)
    device = pick_device()
    if device.type == "cuda":
        allow_tf32()  # the fp32 products that autocast leaves (and all of a `precision: fp32` job)
    encoder, tokenizer = load_base(base_model_path)
    model = TextClassifier(encoder, spec.model, len(labels))
    STRATEGIES.get(spec.optimization.train)(model)
    model.to(device)
    _, total = count_parameters(model)
    compute = "bf16" if resolve_precision(spec.training.precision, device) == torch.bfloat16 else "fp32"
    callbacks.on_event(
        "training_started",
        f"{len(train)} train / {len(validation or [])} validation examples on {device.type} ({compute})",
        {
            "train_examples": len(train),
            "validation_examples": len(validation or []),
            "validation_held_out_from_train": held_out,
            "labels": labels,
            "device": device.type,
            "precision": compute,
        },
    )
    started = time.monotonic()
    resources = resources or Resources()
    context = RegularizerContext(
        model,
        tokenizer,
        device,
        spec.training.max_length,
        spec.training.batch_size,
        spec.training.seed,
        resources.texts,
        resources.source_models,
    )
    regularizers = build_regularizers(spec, context)
    trainer = Trainer(model, tokenizer, task, spec, callbacks, progress_interval, regularizers)
    outcome = trainer.fit(train, validation, checkpoints)
    # What trained is what an unfreezing schedule actually thawed (top_only never thaws the bottom).
    trainable = sum(p.numel() for name, p in model.named_parameters() if name in trainer.touched)
    # Settle the threshold on the kept model, before anything is tested with it.
    if task.multi_label and validation is not None:
        probabilities = predict_proba(model, tokenizer, validation.texts, spec.training.max_length, multi_label=True)
        task.fit_threshold(validation.labels, probabilities)
        outcome.best_metrics = task.report(validation.labels, probabilities)
    train_seconds = time.monotonic() - started + trainer.seconds_before_resume
    metrics: dict[str, Any] = {
        **outcome.best_metrics,
        "best_epoch": outcome.best_epoch,
        "validation_held_out_from_train": held_out,
        "stopped_early": outcome.stopped_early,
        "features_cached": outcome.features_cached,
        "precision": compute,
        "resumed_from_step": outcome.resumed_from_step,
        "history": outcome.history,
        "phases": outcome.phases,
    }
    if data.test is not None:
        metrics["test"] = evaluate(model, tokenizer, data.test, task, spec.training.max_length)
    return AdaptationResult(
        model.cpu(), tokenizer, labels, metrics, task.threshold, trainable, total, train_seconds, _peak_memory(device)
    )


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def save_result(result: AdaptationResult, spec: JobSpec, directory: Path) -> int:
    """Write a finished job's model; strategies that freeze the base store only their own weights."""
    return save_classifier(
        result.model,
        result.tokenizer,
        result.labels,
        spec.model,
        spec.training.max_length,
        directory,
        base_model=spec.base_model,
        own_weights_only=spec.optimization.train != "all",
        task=spec.task,
        threshold=result.threshold,
    )

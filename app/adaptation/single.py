"""One model's job, no server needed: its stages (on the encoder), then the main task with its
objectives and sampled auxiliary tasks, then optionally the main task alone. An ensemble runs
this for each member (ensemble.py); `adapt` (job.py) chooses.

Called in every process of a distributed run (distributed.py), it trains the main task with
DistributedDataParallel; rank 0 reports, tests the kept model and returns the result to save.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from app.adaptation.artifact import save_classifier
from app.adaptation.callbacks import Callbacks
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.classification import classification_trainer
from app.adaptation.data import LabeledTexts, TaskData
from app.adaptation.distributed import current_world, total_over_ranks
from app.adaptation.inference import predict_proba
from app.adaptation.labels import InvalidTaskData, check_labels, split_validation
from app.adaptation.memory import MemoryWindow
from app.adaptation.model import TextClassifier, count_parameters, load_pretrained_encoder
from app.adaptation.multitask import sampled_tasks
from app.adaptation.objectives import ObjectiveContext, build_objectives
from app.adaptation.objectives.masked_lm import MainTextMaskedLM
from app.adaptation.objectives.slices import slice_metrics
from app.adaptation.precision import allow_tf32
from app.adaptation.precision import resolve as resolve_precision
from app.adaptation.regularizers import REGULARIZERS, Regularizer, RegularizerContext
from app.adaptation.resources import Resources
from app.adaptation.result import AdaptationResult
from app.adaptation.seeding import seed_everything
from app.adaptation.stages import run_stages
from app.adaptation.strategies import STRATEGIES
from app.adaptation.student import cut_encoder
from app.adaptation.tasks import TASKS, Task
from app.adaptation.trainer import TrainOutcome
from app.schemas.spec import JobSpec


class BaseModelUnloadable(RuntimeError):
    """The base model's directory does not hold a loadable encoder and tokenizer."""


def load_base(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        return load_pretrained_encoder(path), AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise BaseModelUnloadable(f"cannot load the base model: {type(error).__name__}: {error}") from error


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_regularizers(spec: JobSpec, context: RegularizerContext) -> list[Regularizer]:
    return [REGULARIZERS.get(options.name)(options, context) for options in spec.optimization.regularizers]


def adapt_single(
    spec: JobSpec,
    data: TaskData,
    base_model_path: Path,
    callbacks: Callbacks,
    progress_interval: float,
    resources: Resources,
    checkpoints: Checkpoints | None,
) -> AdaptationResult:
    """Train one model. With `checkpoints`, the run writes them as it goes and, when one exists
    already (a run of the same spec and data that died or paused), goes on from it."""
    world = current_world()
    train, validation, held_out = split_validation(spec, data)
    labels = check_labels(spec.task, train, {"validation": validation, "test": data.test})
    if spec.teacher is not None:
        labels = teacher_labels(spec.teacher, resources, labels)
    task = TASKS.get(spec.task)(labels, spec.threshold)
    seed_everything(spec.training.seed)
    device = pick_device()
    memory = MemoryWindow(device)  # this job's peak, not the pool process's lifetime one
    if device.type == "cuda":
        allow_tf32()  # the fp32 products that autocast leaves (and all of a `precision: fp32` job)
    encoder, tokenizer = load_base(base_model_path)
    if spec.student_layers is not None:
        depth = encoder.config.num_hidden_layers
        kept = cut_encoder(encoder, spec.student_layers)
        callbacks.on_event("student", f"student: layers {kept} of the base model's {depth} kept", {"layers": kept})
    encoder.to(device)
    started = time.monotonic()
    phased = checkpoints is not None and (bool(spec.stages) or spec.main_task_epochs > 0)
    stage_reports = run_stages(spec, encoder, tokenizer, resources, callbacks, progress_interval, checkpoints)
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
    context = RegularizerContext(
        model,
        tokenizer,
        device,
        spec.training.max_length,
        spec.training.batch_size,
        spec.training.seed,
        spec.text_field,
        resources,
    )
    regularizers = build_regularizers(spec, context)
    outcome, touched, earlier_seconds = train_main_task(
        spec,
        model,
        tokenizer,
        task,
        train,
        validation,
        callbacks,
        progress_interval,
        regularizers,
        resources,
        checkpoints.phase("main") if phased else checkpoints,
        checkpoints.phase("main-alone") if phased else None,
    )
    model.extra_heads = nn.ModuleDict()  # training-only heads are not part of the model
    # What trained is what an unfreezing schedule actually thawed (top_only never thaws the bottom).
    trainable = sum(p.numel() for name, p in model.named_parameters() if name in touched)
    # Settle the threshold on the kept model, before anything is tested with it.
    if task.multi_label and validation is not None and world.is_main:
        probabilities = predict_proba(model, tokenizer, validation.texts, spec.training.max_length, multi_label=True)
        task.fit_threshold(validation.labels, probabilities)
        outcome.best_metrics = task.report(validation.labels, probabilities)
    train_seconds = time.monotonic() - started + earlier_seconds
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
        "loss_curve": outcome.loss_curve,
        **signal_metrics(spec, stage_reports, outcome),
    }
    if not world.is_main:  # a replica of rank 0's model, which rank 0 alone tests and saves
        peak = total_over_ranks(world, memory.peak(), device)  # rank 0 joins after testing
        return AdaptationResult(
            model.cpu(), tokenizer, labels, metrics, None, trainable, total, train_seconds, peak, main=False
        )
    if data.test is not None:
        metrics["test"] = evaluate(model, tokenizer, data.test, task, spec.training.max_length)
    if spec.slices:
        parts = {"validation": validation, "test": data.test}
        metrics["slices"] = {
            name: slices_of(spec, model, tokenizer, part, task) for name, part in parts.items() if part
        }
    peak = total_over_ranks(world, memory.peak(), device)  # a job of N processes used all N
    return AdaptationResult(
        model.cpu(), tokenizer, labels, metrics, task.threshold, trainable, total, train_seconds, peak
    )


def train_main_task(
    spec: JobSpec,
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    train: LabeledTexts,
    validation: LabeledTexts | None,
    callbacks: Callbacks,
    progress_interval: float,
    regularizers: list[Regularizer],
    resources: Resources,
    checkpoints: Checkpoints | None,
    alone_checkpoints: Checkpoints | None,
) -> tuple[TrainOutcome, set[str], float]:
    """The main task with its objectives and sampled tasks, then (`main_task_epochs`) the main task
    alone; returns the outcome, the parameters that trained, and the seconds of earlier attempts."""
    device = next(model.parameters()).device
    objectives = build_objectives(ObjectiveContext(spec, model, tokenizer, device, train, task, resources, callbacks))
    sampled = sampled_tasks(spec, tokenizer, resources, model)
    trainer = classification_trainer(
        model,
        tokenizer,
        task,
        spec,
        callbacks,
        progress_interval,
        regularizers=regularizers,
        objectives=objectives,
        sampled=sampled,
        checkpoints=checkpoints,
    )
    outcome = trainer.fit(train, validation)
    touched = set(trainer.touched)
    if spec.main_task_epochs:  # no sampled tasks, no masked-LM task on the main text
        epochs = spec.training.model_copy(update={"epochs": spec.main_task_epochs})
        alone = spec.model_copy(update={"tasks": [], "training": epochs})
        plain = [o for o in objectives if not isinstance(o, MainTextMaskedLM)]
        finish = classification_trainer(
            model,
            tokenizer,
            task,
            alone,
            callbacks,
            progress_interval,
            regularizers=regularizers,
            objectives=plain,
            checkpoints=alone_checkpoints,
            stage="main task alone",
        )
        outcome = merge_outcomes(outcome, finish.fit(train, validation))
        touched |= finish.touched
    return outcome, touched, trainer.seconds_before_resume


def evaluate(
    model: TextClassifier, tokenizer: PreTrainedTokenizerBase, data: LabeledTexts, task: Task, max_length: int
) -> dict[str, Any]:
    probabilities = predict_proba(model, tokenizer, data.texts, max_length, multi_label=task.multi_label)
    return task.report(data.labels, probabilities)


def slices_of(
    spec: JobSpec, model: TextClassifier, tokenizer: PreTrainedTokenizerBase, data: LabeledTexts, task: Task
) -> dict[str, dict[str, Any]]:
    probabilities = predict_proba(model, tokenizer, data.texts, spec.training.max_length, multi_label=task.multi_label)
    return slice_metrics(spec, tokenizer, data, probabilities, task)


def teacher_labels(teacher_id: str, resources: Resources, labels: list[str]) -> list[str]:
    """A student predicts the teacher's labels, in the teacher's order; its data may use fewer."""
    teacher = resources.teacher(teacher_id)
    outside = sorted(set(labels) - set(teacher.labels))
    if outside:
        raise InvalidTaskData(
            f"the training data has labels the teacher {teacher_id!r} does not: {', '.join(map(repr, outside[:10]))}"
        )
    return list(teacher.labels)


def signal_metrics(spec: JobSpec, stage_reports: list[dict[str, Any]], outcome: TrainOutcome) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if stage_reports:
        metrics["stages"] = stage_reports
    if spec.tasks:
        metrics["task_steps"] = outcome.task_steps
    if spec.teacher is not None:
        metrics["distillation"] = {"teacher": spec.teacher, "student_layers": spec.student_layers}
    return metrics


def merge_outcomes(first: TrainOutcome, then: TrainOutcome) -> TrainOutcome:
    """A run in two parts (multi-task, then the main task alone) as one: the second part's kept
    epoch is the model's, numbered after the first part's epochs."""
    epochs = max((entry["epoch"] for entry in first.history), default=first.best_epoch)
    history = first.history + [
        {**entry, "epoch": entry["epoch"] + epochs, "part": "main task alone"} for entry in then.history
    ]
    return replace(
        then,
        best_epoch=then.best_epoch + epochs,
        history=history,
        phases=first.phases + then.phases,
        loss_curve=first.loss_curve + [{**point, "step": point["step"] + first.steps} for point in then.loss_curve],
        steps=first.steps + then.steps,
        task_steps={
            k: first.task_steps.get(k, 0) + then.task_steps.get(k, 0) for k in first.task_steps | then.task_steps
        },
    )


def save_single(result: AdaptationResult, spec: JobSpec, directory: Path) -> int:
    """Write a finished model; strategies that freeze the base store only their own weights,
    unless stages or a cut changed the encoder they sit on."""
    return save_classifier(
        result.model,
        result.tokenizer,
        result.labels,
        spec.model,
        spec.training.max_length,
        directory,
        base_model=spec.base_model,
        own_weights_only=spec.optimization.train != "all" and not spec.trains_own_encoder,
        task=spec.task,
        threshold=result.threshold,
    )

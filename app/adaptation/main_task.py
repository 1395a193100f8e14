"""The main task's training: the task with its objectives and sampled auxiliary tasks, then
(`main_task_epochs`) the main task alone."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from transformers import PreTrainedTokenizerBase

from app.adaptation.callbacks import Callbacks
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.classification import classification_trainer
from app.adaptation.data import LabeledTexts
from app.adaptation.model import TextClassifier
from app.adaptation.multitask import sampled_tasks
from app.adaptation.objectives import ObjectiveContext, build_objectives, objective_tasks
from app.adaptation.objectives.masked_lm import MainTextMaskedLM
from app.adaptation.regularizers import Regularizer
from app.adaptation.resources import Resources
from app.adaptation.tasks import Task
from app.adaptation.trainer import TrainOutcome
from app.schemas.spec import JobSpec


@dataclass(frozen=True)
class MainRun:
    """What every training of a job's main task shares (its choosing run, its refit)."""

    spec: JobSpec
    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    task: Task
    callbacks: Callbacks
    progress_interval: float
    regularizers: list[Regularizer]
    resources: Resources

    def arguments(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
    last_epoch: int | None = None,
    stage: str = "train",
) -> tuple[TrainOutcome, set[str], float]:
    """The main task with its objectives and sampled tasks, then (`main_task_epochs`) the main task
    alone; returns the outcome, the parameters that trained, and the seconds of earlier attempts."""
    device = next(model.parameters()).device
    objectives = build_objectives(ObjectiveContext(spec, model, tokenizer, device, train, task, resources, callbacks))
    sampled = sampled_tasks(spec, tokenizer, resources, model) + objective_tasks(objectives)
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
        stage=stage,
        feature_cache=resources.feature_cache,
    )
    outcome = trainer.fit(train, validation, last_epoch=last_epoch)
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

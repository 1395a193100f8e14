"""Extra terms of a training step's loss, each from one job option (`consistency`, `slices`,
`distillation`, a data-less masked-LM task in `tasks`): small objects that own their data and heads
and add `loss(...)` to the main task's loss at every main-task step.

A builder registered under the option's name takes the step context and returns its objective, or
None when the job does not ask for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import PreTrainedTokenizerBase

from app.adaptation.callbacks import Callbacks
from app.adaptation.data import Batch, LabeledTexts
from app.adaptation.model import TextClassifier
from app.adaptation.multitask import SampledTask
from app.adaptation.registry import Registry
from app.adaptation.resources import Resources
from app.adaptation.tasks import Task
from app.schemas.spec import JobSpec


@dataclass(frozen=True)
class StepInputs:
    batch: Batch  # the main task's batch
    logits: torch.Tensor  # the main head's fp32 logits for it
    pooled: torch.Tensor  # the pooled vectors the head read
    step: int  # optimizer steps before this one


@dataclass
class ObjectiveContext:
    spec: JobSpec
    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    train: LabeledTexts  # the main task's training rows, in the order batch indices refer to
    task: Task
    resources: Resources
    callbacks: Callbacks


class Objective(Protocol):
    needs_inputs: bool  # reads the batch's tokens or runs the encoder itself (features cannot be cached)
    main_weight: float  # multiplies the main task's loss (distillation gives part of it to the teacher)

    def loss(self, model: TextClassifier, inputs: StepInputs) -> torch.Tensor: ...


ObjectiveBuilder = Callable[[ObjectiveContext], Objective | None]
OBJECTIVES: Registry[ObjectiveBuilder] = Registry("objective", __name__)


def objective_tasks(objectives: list[Objective]) -> list[SampledTask]:
    """The steps of their own that objectives bring (distillation's transfer set), to interleave
    with the main task's like a multi-task run's tasks."""
    return [task for objective in objectives for task in getattr(objective, "sampled_tasks", [])]


def build_objectives(context: ObjectiveContext) -> list[Objective]:
    built = (OBJECTIVES.get(name)(context) for name in OBJECTIVES.names())
    return [objective for objective in built if objective is not None]

"""Training a classifier: the step loss of the main task (and of stages' intermediate tasks), and
the trainer that runs it with its hooks.

A main-task step is the task's loss on the head's logits (times the objectives' share of it), plus
every objective's term (consistency, slices, distillation, the masked-LM task on the main text)
and every regularizer's penalty; a step drawn for an auxiliary task with data of its own is that
task's loss alone (multitask.py). The forward pass runs in the job's compute dtype, through the
frozen-layer cache when the schedule keeps layers frozen, and through DistributedDataParallel in a
run of several processes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from app.adaptation import distributed
from app.adaptation.callbacks import Callbacks
from app.adaptation.checkpoint import Checkpointing, Checkpoints
from app.adaptation.data import Batch, Batches, LabeledTexts, token_batches
from app.adaptation.distributed import World
from app.adaptation.features import FeatureBatches, FeatureCache
from app.adaptation.frozen_cache import FrozenLayers
from app.adaptation.hooks import Hook
from app.adaptation.model import TextClassifier
from app.adaptation.multitask import MultiTaskBatches, SampledTask
from app.adaptation.objectives import Objective, StepInputs
from app.adaptation.phases import UnfreezingPhases
from app.adaptation.precision import autocast, resolve
from app.adaptation.regularizers import Regularizer
from app.adaptation.tasks import Task
from app.adaptation.trainer import Trainer
from app.schemas.spec import JobSpec

VALIDATION_BATCH_SIZE = 64


class ClassificationLoss(Hook):
    """A StepLoss (trainer.py); a hook too, to let go of the DDP wrapper when the run ends."""

    def __init__(
        self,
        model: TextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        task: Task,
        spec: JobSpec,
        regularizers: list[Regularizer],
        objectives: list[Objective],
        sampled: list[SampledTask],
        frozen: FrozenLayers | None,
        world: World,
    ) -> None:
        self.model, self.tokenizer, self.task, self.spec, self.world = model, tokenizer, task, spec, world
        self.regularizers, self.objectives, self.frozen = regularizers, objectives, frozen
        self.sampled = {task.name: task for task in sampled}  # auxiliary tasks with data of their own
        self.main_weight = math.prod(objective.main_weight for objective in objectives)
        self.device = next(model.parameters()).device
        self.dtype = resolve(spec.training.precision, self.device)
        self.data_parallel: torch.nn.Module | None = None  # the DDP wrapper, while a distributed run trains

    @property
    def needs_inputs(self) -> bool:
        """Whether a step reads the batch's tokens beyond the pooled vectors (no feature cache then)."""
        return bool(self.sampled) or any(unit.needs_inputs for unit in [*self.regularizers, *self.objectives])

    def batches(self, train: LabeledTexts, validation: LabeledTexts | None) -> tuple[Any, Batches | None]:
        cfg = self.spec.training
        targets = self.task.targets(train.labels)
        train_tokens = token_batches(self.tokenizer, train.texts, cfg.max_length, targets, cfg.batch_size)
        validation_tokens = None
        if validation is not None:
            validation_tokens = token_batches(
                self.tokenizer, validation.texts, cfg.max_length, None, VALIDATION_BATCH_SIZE
            )
        if self.sampled:
            return MultiTaskBatches(train_tokens, list(self.sampled.values()), self.spec), validation_tokens
        return train_tokens, validation_tokens

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if batch.task is not None:
            with autocast(self.device, self.dtype):
                return self.sampled[batch.task].loss(self.model, batch, step).float(), None
        logits, pooled = self._train_forward(batch)
        loss = self.task.loss(logits, batch.labels.to(self.device))
        total = loss * self.main_weight if self.main_weight != 1.0 else loss
        if self.objectives:
            inputs = StepInputs(batch, logits, pooled, step)
            with autocast(self.device, self.dtype):
                for objective in self.objectives:
                    total = total + objective.loss(self.model, inputs).float()
        for regularizer in self.regularizers:
            ids = None if batch.input_ids is None else batch.input_ids.to(self.device)
            mask = None if batch.attention_mask is None else batch.attention_mask.to(self.device)
            with autocast(self.device, self.dtype):
                total = total + regularizer.penalty(self.model, ids, mask, logits).float()
        return total, loss.detach()

    @torch.inference_mode()
    def evaluate(self, batches: Batches | FeatureBatches, gold: list) -> dict[str, Any]:
        probabilities = torch.empty(len(gold), len(self.task.labels))
        for batch in batches.by_length():
            with autocast(self.device, self.dtype):
                logits = self.model.head(self._pooled(batch)).float()
            probabilities[batch.indices] = self.task.probabilities(logits).cpu()
        self.task.fit_threshold(gold, probabilities)  # multi_label without a configured threshold
        return self.task.report(gold, probabilities)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.data_parallel = None  # its gradient hooks go with it

    def _pooled(self, batch: Batch) -> torch.Tensor:
        if batch.features is not None:
            return self.model.pooling.combine(batch.features.to(self.device))
        types = None if batch.token_type_ids is None else batch.token_type_ids.to(self.device)
        return self.model.pooled(batch.input_ids.to(self.device), batch.attention_mask.to(self.device), types)

    def _train_forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(fp32 logits, pooled vectors) of a main-task training batch, in the job's compute dtype;
        in a distributed run through DDP, whose backward then averages the gradients of the ranks."""
        if not self.world.distributed:
            return self._forward(batch)
        if self.data_parallel is None:  # built at the first step, once the trainable set is settled
            module = distributed.ForwardModule(self.model, self._forward)
            self.data_parallel = distributed.data_parallel(module, self.device)
        return self.data_parallel(batch)

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.dtype):
            cached = self.frozen is not None and self.frozen.caching
            pooled = self.frozen.pooled(batch) if cached else self._pooled(batch)
            return self.model.head(pooled).float(), pooled


def classification_trainer(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    spec: JobSpec,
    callbacks: Callbacks,
    progress_interval: float = 1.0,
    *,
    regularizers: list[Regularizer] | None = None,
    objectives: list[Objective] | None = None,
    sampled: list[SampledTask] | None = None,
    checkpoints: Checkpoints | None = None,
    stage: str = "train",
    world: World | None = None,
    feature_cache: Path | None = None,
) -> Trainer:
    """A trainer of `model` on `task` with the hooks every classification run has: the feature cache
    of a frozen encoder, the unfreezing schedule's phases, the frozen bottom's cache and, with
    `checkpoints`, checkpoints (without them a run cannot pause)."""
    world = world or distributed.current_world()
    regularizers = regularizers or []
    frozen = FrozenLayers(regularizers)
    loss = ClassificationLoss(
        model, tokenizer, task, spec, regularizers, objectives or [], sampled or [], frozen, world
    )
    hooks: list[Hook] = [FeatureCache(loss.needs_inputs, feature_cache), UnfreezingPhases(), frozen]
    if checkpoints is not None:
        hooks.append(Checkpointing(checkpoints))
    return Trainer(model, loss, spec, callbacks, progress_interval, hooks, stage, world)

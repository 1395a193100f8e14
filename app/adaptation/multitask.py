"""Multi-task training (`tasks` with data, `task_sampling`): each step trains one task on one batch
of it, the task drawn with the sampling's probabilities (as in MT-DNN, Liu et al. 2019). Every task
shares the encoder; a classification task has its own head on the pooled vector, a masked-LM task
the tied LM head."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from app.adaptation.data import MAIN_TASK, Batch, Batches, token_batches
from app.adaptation.masked_lm import Masking, lm_head
from app.adaptation.model import TextClassifier
from app.adaptation.resources import Resources
from app.adaptation.sampling import SAMPLINGS
from app.adaptation.seeding import step_generator
from app.schemas.signal import AuxiliaryTask
from app.schemas.spec import JobSpec


class SampledTask(Protocol):
    name: str
    batches: Batches

    def loss(self, model: TextClassifier, batch: Batch, step: int) -> torch.Tensor: ...


class ClassificationTask:
    def __init__(self, options: AuxiliaryTask, spec: JobSpec, tokenizer: PreTrainedTokenizerBase, data: Any, model):
        self.name, self.weight = options.name, options.weight
        self.labels = sorted(set(data.labels))
        index = {label: i for i, label in enumerate(self.labels)}
        targets = [index[label] for label in data.labels]
        cfg = spec.training
        self.batches = token_batches(tokenizer, data.texts, cfg.max_length, targets, cfg.batch_size)
        head = nn.Linear(model.encoder.config.hidden_size, len(self.labels))
        model.extra_heads[f"task_{self.name}"] = head.to(next(model.parameters()).device)

    def loss(self, model: TextClassifier, batch: Batch, step: int) -> torch.Tensor:
        device = next(model.parameters()).device
        types = None if batch.token_type_ids is None else batch.token_type_ids.to(device)
        pooled = model.pooled(batch.input_ids.to(device), batch.attention_mask.to(device), types)
        logits = model.extra_heads[f"task_{self.name}"](pooled).float()
        return self.weight * nn.functional.cross_entropy(logits, batch.labels.to(device))


class MaskedLMTask:
    def __init__(self, options: AuxiliaryTask, spec: JobSpec, tokenizer: PreTrainedTokenizerBase, texts, model):
        self.name, self.options, self.seed, self.masking = options.name, options, spec.training.seed, Masking(tokenizer)
        self.batches = token_batches(tokenizer, texts, spec.training.max_length, None, spec.training.batch_size)
        lm_head(model)

    def loss(self, model: TextClassifier, batch: Batch, step: int) -> torch.Tensor:
        generator = step_generator(self.seed, step)
        return self.options.weight * self.masking.loss(model, batch, self.options.mask_rate, generator)


def sampled_tasks(spec: JobSpec, tokenizer, resources: Resources, model: TextClassifier) -> list[SampledTask]:
    """The auxiliary tasks that have data of their own (a data-less masked-LM task is an objective)."""
    tasks: list[SampledTask] = []
    for options in spec.tasks:
        if options.data is None:
            continue
        text_field = options.text_field or spec.text_field
        if options.objective == "classification":
            data = resources.labeled(options.data, text_field, options.label_field or spec.label_field)
            tasks.append(ClassificationTask(options, spec, tokenizer, data, model))
        else:
            tasks.append(MaskedLMTask(options, spec, tokenizer, resources.texts_of(options.data, text_field), model))
    return tasks


class MultiTaskBatches:
    """The main task's batches interleaved with the auxiliary tasks' batches. An epoch has as many
    steps as all tasks have batches; a task that runs out starts a fresh shuffle of its data. The
    order is drawn from the trainer's random state alone, so a resumed epoch replays it exactly."""

    def __init__(self, main: Any, tasks: list[SampledTask], spec: JobSpec) -> None:
        self.main, self.tasks = main, tasks
        self.names = [MAIN_TASK, *(task.name for task in tasks)]
        sizes = [len(main), *(len(task.batches) for task in tasks)]
        self.probabilities = SAMPLINGS.get(spec.task_sampling.name)(sizes, spec.task_sampling)
        self.steps = sum(sizes)

    def __len__(self) -> int:
        return self.steps

    def training_order(self, rng: random.Random) -> Iterator[Batch]:
        sources = [self.main, *(task.batches for task in self.tasks)]
        streams: list[Iterator[Batch] | None] = [None] * len(sources)
        for _ in range(self.steps):
            k = rng.choices(range(len(sources)), weights=self.probabilities)[0]
            batch = next(streams[k], None) if streams[k] is not None else None
            if batch is None:
                streams[k] = sources[k].training_order(rng)
                batch = next(streams[k])
            yield batch if k == 0 else replace(batch, task=self.names[k])

    def by_length(self) -> Iterator[Batch]:
        return self.main.by_length()

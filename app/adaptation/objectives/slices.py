"""Slices (`slices`): slice-based learning after Chen et al. 2019 (Snorkel), reduced to its core.

Every slice gets its own head on the shared pooled vector, trained only on the slice's examples and
weighted by the slice's weight, so the encoder is pushed to serve the slice well; predictions come
from the main head (the paper's attention over slice experts is not built). Metrics are reported
per slice by `slice_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from app.adaptation.data import LabeledTexts, Text, encode
from app.adaptation.model import TextClassifier
from app.adaptation.objectives import OBJECTIVES, ObjectiveContext, StepInputs
from app.adaptation.slicing import Examples, members
from app.adaptation.tasks import Task
from app.schemas.spec import JobSpec


def examples(tokenizer: Any, texts: Sequence[Text], labels: Any, max_length: int) -> Examples:
    """What the slice rules read of texts: the texts, their labels and their token counts."""
    return Examples(texts, labels, [len(ids) for ids in encode(tokenizer, texts, max_length)])


def head_name(slice_name: str) -> str:
    return f"slice_{slice_name}"


class SliceHeads:
    needs_inputs = False  # reads the pooled vectors only
    main_weight = 1.0

    def __init__(self, context: ObjectiveContext) -> None:
        spec, model = context.spec, context.model
        data = examples(context.tokenizer, context.train.texts, context.train.labels, spec.training.max_length)
        self.task, self.weights = context.task, {s.name: s.weight for s in spec.slices}
        self.membership: dict[str, torch.Tensor] = {}
        hidden = model.encoder.config.hidden_size
        for slice_spec in spec.slices:
            selected = torch.tensor(members(slice_spec, data), dtype=torch.bool)
            self.membership[slice_spec.name] = selected
            count = int(selected.sum())
            if count == 0:
                context.callbacks.on_event(
                    "slice_empty",
                    f"slice {slice_spec.name!r} matches no training example: its head gets no signal",
                    {"slice": slice_spec.name},
                )
            model.extra_heads[head_name(slice_spec.name)] = nn.Linear(hidden, len(context.task.labels)).to(
                context.device
            )
        context.callbacks.on_event(
            "slices",
            "slices in train: " + ", ".join(f"{n} {int(m.sum())}" for n, m in self.membership.items()),
            {name: int(m.sum()) for name, m in self.membership.items()},
        )

    def loss(self, model: TextClassifier, inputs: StepInputs) -> torch.Tensor:
        total = inputs.logits.new_zeros(())
        rows = torch.tensor(inputs.batch.indices)
        targets = inputs.batch.labels.to(inputs.pooled.device)
        for name, membership in self.membership.items():
            inside = membership[rows].to(inputs.pooled.device)
            if not inside.any():
                continue
            logits = model.extra_heads[head_name(name)](inputs.pooled[inside]).float()
            total = total + self.weights[name] * self.task.loss(logits, targets[inside])
        return total


def slice_metrics(
    spec: JobSpec, tokenizer: Any, data: LabeledTexts, probabilities: torch.Tensor, task: Task
) -> dict[str, dict[str, Any]]:
    """The task's metrics on each slice of `data` (examples counted; empty slices say so)."""
    found = examples(tokenizer, data.texts, data.labels, spec.training.max_length)
    report: dict[str, dict[str, Any]] = {}
    for slice_spec in spec.slices:
        index = [i for i, inside in enumerate(members(slice_spec, found)) if inside]
        if not index:
            report[slice_spec.name] = {"examples": 0}
            continue
        metrics = task.report([data.labels[i] for i in index], probabilities[index])
        report[slice_spec.name] = {"examples": len(index), **{k: metrics[k] for k in ("accuracy", "macro_f1")}}
    return report


@OBJECTIVES.register("slices")
def slices(context: ObjectiveContext) -> SliceHeads | None:
    return SliceHeads(context) if context.spec.slices else None

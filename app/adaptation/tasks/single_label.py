"""One label per text: softmax over the labels, cross-entropy, accuracy and per-class F1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from app.adaptation.metrics import classification_report
from app.adaptation.tasks import TASKS


class SingleLabel:
    multi_label = False
    threshold = None

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self._index = {label: i for i, label in enumerate(labels)}
        self.weights: torch.Tensor | None = None  # per-class loss weights (training.class_weights)

    def weigh(self, weights: list[float]) -> None:
        self.weights = torch.tensor(weights, dtype=torch.float32)

    def targets(self, gold: Sequence[Any]) -> list[int]:
        return [self._index[label] for label in gold]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = None if self.weights is None else self.weights.to(logits.device)
        return nn.functional.cross_entropy(logits.float(), targets, weight=weight)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=-1)

    def decide(self, probabilities: torch.Tensor) -> list[str]:
        return [self.labels[i] for i in probabilities.argmax(dim=-1).tolist()]

    def report(self, gold: Sequence[Any], probabilities: torch.Tensor) -> dict[str, Any]:
        return classification_report(list(gold), self.decide(probabilities), self.labels)

    def fit_threshold(self, gold: Sequence[Any], probabilities: torch.Tensor) -> None:
        """Nothing to fit: argmax needs no threshold."""


@TASKS.register("single_label")
def single_label(labels: list[str], threshold: float | None) -> SingleLabel:
    return SingleLabel(labels)

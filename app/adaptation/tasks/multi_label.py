"""Several labels per text: one sigmoid per label, binary cross-entropy, a decision threshold
(configured, or tuned on validation for micro-F1), and micro/macro F1 with per-label metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from app.adaptation.tasks import TASKS

THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)]


def f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


class MultiLabel:
    multi_label = True

    def __init__(self, labels: list[str], threshold: float | None) -> None:
        self.labels, self.configured, self.threshold = labels, threshold, threshold
        self._index = {label: i for i, label in enumerate(labels)}

    def targets(self, gold: Sequence[Any]) -> list[list[float]]:
        rows = []
        for names in gold:
            row = [0.0] * len(self.labels)
            for name in names:
                row[self._index[name]] = 1.0
            rows.append(row)
        return rows

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def cut(self, threshold: float | None = None) -> float:
        """The threshold in use: the given one, else the configured or tuned one, else 0.5."""
        return threshold if threshold is not None else (self.threshold if self.threshold is not None else 0.5)

    def decide(self, probabilities: torch.Tensor, threshold: float | None = None) -> list[tuple[str, ...]]:
        cut = self.cut(threshold)
        return [tuple(self.labels[i] for i in (row > cut).nonzero().flatten().tolist()) for row in probabilities]

    def report(
        self, gold: Sequence[Any], probabilities: torch.Tensor, threshold: float | None = None
    ) -> dict[str, Any]:
        predicted = self.decide(probabilities, threshold)
        per_label, totals = {}, [0, 0, 0]
        for label in self.labels:
            tp = sum(1 for g, p in zip(gold, predicted, strict=True) if label in g and label in p)
            fp = sum(1 for g, p in zip(gold, predicted, strict=True) if label not in g and label in p)
            fn = sum(1 for g, p in zip(gold, predicted, strict=True) if label in g and label not in p)
            precision, recall, score = f1(tp, fp, fn)
            per_label[label] = {"precision": precision, "recall": recall, "f1": score, "support": tp + fn}
            totals = [totals[0] + tp, totals[1] + fp, totals[2] + fn]
        present = [label for label in self.labels if per_label[label]["support"] > 0]
        exact = sum(1 for g, p in zip(gold, predicted, strict=True) if set(g) == set(p))
        return {
            "accuracy": exact / len(gold) if gold else 0.0,  # subset accuracy: every label right
            "micro_f1": f1(*totals)[2],
            "macro_f1": sum(per_label[label]["f1"] for label in present) / len(present) if present else 0.0,
            "threshold": threshold
            if threshold is not None
            else (self.threshold if self.threshold is not None else 0.5),
            "examples": len(gold),
            "per_class": per_label,
        }

    def fit_threshold(self, gold: Sequence[Any], probabilities: torch.Tensor) -> None:
        """Without a configured threshold, take the one that maximises micro-F1 on `gold` (validation)."""
        if self.configured is None:
            self.threshold = max(
                THRESHOLDS, key=lambda t: (self.report(gold, probabilities, t)["micro_f1"], -abs(t - 0.5))
            )


@TASKS.register("multi_label")
def multi_label(labels: list[str], threshold: float | None) -> MultiLabel:
    return MultiLabel(labels, threshold)

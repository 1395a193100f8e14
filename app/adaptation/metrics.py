"""Classification metrics: accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_report(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    per_class: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p == label)
        predicted_n = sum(1 for p in predicted if p == label)
        support = sum(1 for g in gold if g == label)
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p)
    present = [label for label in labels if per_class[label]["support"] > 0]
    macro_f1 = sum(per_class[label]["f1"] for label in present) / len(present) if present else 0.0
    return {
        "accuracy": correct / len(gold) if gold else 0.0,
        "macro_f1": macro_f1,
        "examples": len(gold),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(gold, predicted, labels),
    }


def confusion_matrix(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Counts of (gold, predicted) pairs: row i is gold label i, column j predicted label j."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        if g in index and p in index:  # a gold label the model never saw has no row
            matrix[index[g]][index[p]] += 1
    return {"labels": list(labels), "matrix": matrix}

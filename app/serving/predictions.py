"""Probabilities -> the predictions an API caller reads."""

from __future__ import annotations

from typing import Any

import torch


def format_predictions(
    labels: list[str], probabilities: torch.Tensor, multi_label: bool = False, threshold: float | None = None
) -> list[dict[str, Any]]:
    """For each row: the top label with its score and every label's probability; a multi-label
    model adds `labels`, those above its threshold (0.5 when it has none)."""
    predictions = []
    for row in probabilities.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        prediction: dict[str, Any] = {
            "label": labels[best],
            "score": row[best],
            "scores": dict(zip(labels, row, strict=True)),
        }
        if multi_label:
            cut = threshold if threshold is not None else 0.5
            prediction["labels"] = [label for label, p in zip(labels, row, strict=True) if p > cut]
        predictions.append(prediction)
    return predictions

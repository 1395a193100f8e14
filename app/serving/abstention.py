"""`abstain_below`: a prediction under the model's (or the request's) threshold has no label.

Pure Python: the API applies it to what the inference thread returns, and a batch prediction run to
its rows, without loading torch."""

from __future__ import annotations

from typing import Any


def abstain(predictions: list[dict[str, Any]], below: float | None) -> list[dict[str, Any]]:
    """Predictions whose top score is under `below` lose their label (null); their scores stay."""
    if below is None:
        return predictions
    return [{**p, "label": None} if p["score"] < below else p for p in predictions]

"""Fine-tuning: every weight of encoder and head trains."""

from __future__ import annotations

from app.adaptation.model import TextClassifier
from app.adaptation.strategies import STRATEGIES


@STRATEGIES.register("all")
def all_weights(model: TextClassifier) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(True)

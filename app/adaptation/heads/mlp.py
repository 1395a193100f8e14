"""A hidden layer before the classifier: dropout, linear, tanh, dropout, linear."""

from __future__ import annotations

from torch import nn

from app.adaptation.heads import HEADS
from app.schemas.spec import ModelConfig


@HEADS.register("mlp")
def mlp(in_features: int, num_labels: int, config: ModelConfig) -> nn.Module:
    return nn.Sequential(
        nn.Dropout(config.dropout),
        nn.Linear(in_features, config.head_hidden),
        nn.Tanh(),
        nn.Dropout(config.dropout),
        nn.Linear(config.head_hidden, num_labels),
    )

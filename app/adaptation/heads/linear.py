"""Dropout then one linear layer: the classifier of Devlin et al. (2019)."""

from __future__ import annotations

from torch import nn

from app.adaptation.heads import HEADS
from app.schemas.spec import ModelConfig


@HEADS.register("linear")
def linear(in_features: int, num_labels: int, config: ModelConfig) -> nn.Module:
    return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_features, num_labels))

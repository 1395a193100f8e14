"""Heads: the new task layer on top of the pooled vector (registered as `model.head`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from app.adaptation.registry import Registry
from app.schemas.spec import ModelConfig

# A head factory takes (input size, number of labels, the model config) and returns a module
# mapping the pooled vector to logits.
HeadFactory = Callable[[int, int, ModelConfig], nn.Module]
HEADS: Registry[HeadFactory] = Registry("head", __name__)

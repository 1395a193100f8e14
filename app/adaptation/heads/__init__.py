"""Heads: the new task layer on top of the pooled vector (registered as `model.head`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from app.adaptation.registry import Registry, discover

# A head factory takes (input size, number of labels, dropout) and returns a module mapping the
# pooled vector to logits.
HeadFactory = Callable[[int, int, float], nn.Module]
HEADS: Registry[HeadFactory] = Registry("head")

discover(__name__)

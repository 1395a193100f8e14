"""Poolings: token vectors of the encoder -> one vector per text (registered as `model.pooling`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from app.adaptation.registry import Registry, discover

# A pooling factory takes the encoder's hidden size and layer count and returns a module whose
# forward(hidden_states, attention_mask) gets every layer's output (embeddings first).
PoolingFactory = Callable[[int, int], nn.Module]
POOLINGS: Registry[PoolingFactory] = Registry("pooling")

discover(__name__)

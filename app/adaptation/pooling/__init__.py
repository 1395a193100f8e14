"""Poolings: the encoder's per-layer token vectors -> one vector per text (`model.pooling`).

Every pooling is split in two so that a frozen encoder's work can be cached: `reduce` turns the
hidden states into a few vectors per text ([batch, k, hidden], no learned weights), `combine` turns
those into the pooled vector (where any learned weights live). forward = combine(reduce(...)).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

from app.adaptation.registry import Registry


class Pooling(nn.Module, ABC):
    @abstractmethod
    def reduce(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        """A few vectors per text, [batch, k, hidden], from every layer's output (embeddings first)."""

    def combine(self, reduced: torch.Tensor) -> torch.Tensor:
        return reduced[:, 0]

    def scale_parameters(self) -> list[nn.Parameter]:
        """Parameters that only scale the pooled vector, which the head's weights can absorb: a
        full-batch head fit keeps them fixed, so that its L2 penalty on the head bounds the model."""
        return []

    def forward(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        return self.combine(self.reduce(hidden_states, mask))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# A pooling factory takes the encoder's hidden size and layer count.
PoolingFactory = Callable[[int, int], Pooling]
POOLINGS: Registry[PoolingFactory] = Registry("pooling", __name__)

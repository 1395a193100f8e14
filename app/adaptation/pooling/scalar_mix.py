"""ELMo's scalar mix (Peters et al. 2018, eq. 1): gamma * sum_l softmax(s)_l * h_l over every layer
(embeddings included), mean-pooled over real tokens.

Mean pooling is linear, so mixing then pooling equals pooling each layer then mixing: `reduce`
keeps one mean vector per layer (cacheable for a frozen encoder) and `combine` mixes them.
"""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.pooling import POOLINGS, Pooling, masked_mean


class ScalarMix(Pooling):
    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.scalars = nn.Parameter(torch.zeros(num_layers + 1))  # uniform weights at the start
        self.gamma = nn.Parameter(torch.ones(()))

    def reduce(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([masked_mean(layer, mask) for layer in hidden_states], dim=1)

    def scale_parameters(self) -> list[nn.Parameter]:
        return [self.gamma]

    def combine(self, reduced: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.scalars, dim=0).to(reduced.dtype)
        return self.gamma * torch.einsum("l,blh->bh", weights, reduced)


@POOLINGS.register("scalar_mix")
def scalar_mix(hidden_size: int, num_layers: int) -> Pooling:
    return ScalarMix(num_layers)

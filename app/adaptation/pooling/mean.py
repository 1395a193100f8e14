"""Mean of the last layer's token vectors over real (unpadded) tokens: how MiniLM/SBERT embed."""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.pooling import POOLINGS


class MeanPooling(nn.Module):
    def forward(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(hidden_states[-1].dtype)
        summed = (hidden_states[-1] * weights).sum(dim=1)
        return summed / weights.sum(dim=1).clamp(min=1.0)


@POOLINGS.register("mean")
def mean(hidden_size: int, num_layers: int) -> nn.Module:
    return MeanPooling()

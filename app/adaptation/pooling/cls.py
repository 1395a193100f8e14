"""The first token's last-layer vector ([CLS]), as in BERT's classification fine-tuning."""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.pooling import POOLINGS


class ClsPooling(nn.Module):
    def forward(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        return hidden_states[-1][:, 0]


@POOLINGS.register("cls")
def cls(hidden_size: int, num_layers: int) -> nn.Module:
    return ClsPooling()

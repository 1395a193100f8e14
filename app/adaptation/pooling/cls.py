"""The first token's last-layer vector ([CLS]), as in BERT's classification fine-tuning."""

from __future__ import annotations

import torch

from app.adaptation.pooling import POOLINGS, Pooling


class ClsPooling(Pooling):
    def reduce(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        return hidden_states[-1][:, :1]


@POOLINGS.register("cls")
def cls(hidden_size: int, num_layers: int) -> Pooling:
    return ClsPooling()

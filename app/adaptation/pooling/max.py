"""Element-wise max of the last layer's token vectors over real tokens (InferSent-style)."""

from __future__ import annotations

import torch

from app.adaptation.pooling import POOLINGS, Pooling


class MaxPooling(Pooling):
    def reduce(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        last = hidden_states[-1]
        padded = ~mask.bool().unsqueeze(-1)
        return last.masked_fill(padded, torch.finfo(last.dtype).min).max(dim=1, keepdim=True).values


@POOLINGS.register("max")
def max_(hidden_size: int, num_layers: int) -> Pooling:
    return MaxPooling()

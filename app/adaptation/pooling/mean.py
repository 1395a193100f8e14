"""Mean of the last layer's token vectors over real (unpadded) tokens: how MiniLM/SBERT embed."""

from __future__ import annotations

import torch

from app.adaptation.pooling import POOLINGS, Pooling, masked_mean


class MeanPooling(Pooling):
    def reduce(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(hidden_states[-1], mask).unsqueeze(1)


@POOLINGS.register("mean")
def mean(hidden_size: int, num_layers: int) -> Pooling:
    return MeanPooling()

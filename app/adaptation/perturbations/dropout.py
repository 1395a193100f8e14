"""No change to the text: x' differs from x by the model's own dropout noise (as in the Pi-model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from app.adaptation.perturbations import PERTURBATIONS, Tokens
from app.schemas.spec_base import Named

if TYPE_CHECKING:
    import torch


class DropoutNoise(Named):
    name: Literal["dropout"] = "dropout"


@PERTURBATIONS.register(DropoutNoise)
def dropout(tokens: Tokens, options: DropoutNoise, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return tokens.input_ids, tokens.attention_mask

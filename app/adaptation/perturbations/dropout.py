"""No change to the text: x' differs from x by the model's own dropout noise (as in the Pi-model)."""

from __future__ import annotations

import torch

from app.adaptation.perturbations import PERTURBATIONS, Tokens
from app.schemas.signal import DropoutNoise


@PERTURBATIONS.register("dropout")
def dropout(tokens: Tokens, options: DropoutNoise, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return tokens.input_ids, tokens.attention_mask

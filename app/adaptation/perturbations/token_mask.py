"""Replace a share of the tokens by [MASK]."""

from __future__ import annotations

import torch

from app.adaptation.perturbations import PERTURBATIONS, Tokens, chosen
from app.schemas.signal import TokenMask


@PERTURBATIONS.register("token_mask")
def token_mask(tokens: Tokens, options: TokenMask, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    picked = chosen(tokens, options.rate, generator)
    return tokens.input_ids.masked_fill(picked, tokens.mask_id), tokens.attention_mask

"""Swap a share of the tokens with their right neighbour (when that neighbour may change too)."""

from __future__ import annotations

import torch

from app.adaptation.perturbations import PERTURBATIONS, Tokens, chosen
from app.schemas.signal import TokenSwap


@PERTURBATIONS.register("token_swap")
def token_swap(tokens: Tokens, options: TokenSwap, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ids = tokens.input_ids.clone()
    picked = chosen(tokens, options.rate, generator)
    for row, position in picked.nonzero().tolist():
        right = position + 1
        if right < ids.shape[1] and tokens.maskable[row, right] and picked[row, position]:
            ids[row, position], ids[row, right] = ids[row, right].clone(), ids[row, position].clone()
            picked[row, right] = False  # a token moves once
    return ids, tokens.attention_mask

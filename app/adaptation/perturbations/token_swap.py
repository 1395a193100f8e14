"""Swap a share of the tokens with their right neighbour (when that neighbour may change too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from app.adaptation.perturbations import PERTURBATIONS, Tokens, chosen
from app.schemas.spec_base import Named

if TYPE_CHECKING:
    import torch


class TokenSwap(Named):
    name: Literal["token_swap"] = "token_swap"
    rate: float = Field(0.1, gt=0, lt=1, description="Share of tokens swapped with their right neighbour.")


@PERTURBATIONS.register(TokenSwap)
def token_swap(tokens: Tokens, options: TokenSwap, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ids = tokens.input_ids.clone()
    picked = chosen(tokens, options.rate, generator)
    for row, position in picked.nonzero().tolist():
        right = position + 1
        if right < ids.shape[1] and tokens.maskable[row, right] and picked[row, position]:
            ids[row, position], ids[row, right] = ids[row, right].clone(), ids[row, position].clone()
            picked[row, right] = False  # a token moves once
    return ids, tokens.attention_mask

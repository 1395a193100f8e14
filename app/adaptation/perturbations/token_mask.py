"""Replace a share of the tokens by [MASK]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from app.adaptation.perturbations import PERTURBATIONS, Tokens, chosen
from app.schemas.spec_base import Named

if TYPE_CHECKING:
    import torch


class TokenMask(Named):
    name: Literal["token_mask"] = "token_mask"
    rate: float = Field(0.15, gt=0, lt=1, description="Share of tokens replaced by [MASK].")


@PERTURBATIONS.register(TokenMask)
def token_mask(tokens: Tokens, options: TokenMask, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    picked = chosen(tokens, options.rate, generator)
    return tokens.input_ids.masked_fill(picked, tokens.mask_id), tokens.attention_mask

"""Drop a share of the tokens; the rest close up (and the row is padded again at its end)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from app.adaptation.perturbations import PERTURBATIONS, Tokens, chosen
from app.schemas.spec_base import Named

if TYPE_CHECKING:
    import torch


class TokenDeletion(Named):
    name: Literal["token_deletion"] = "token_deletion"
    rate: float = Field(0.1, gt=0, lt=1, description="Share of tokens dropped from the text.")


@PERTURBATIONS.register(TokenDeletion)
def token_deletion(
    tokens: Tokens, options: TokenDeletion, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    keep = tokens.attention_mask.bool() & ~chosen(tokens, options.rate, generator)
    ids = tokens.input_ids.new_full(tokens.input_ids.shape, tokens.pad_id)
    mask = tokens.attention_mask.new_zeros(tokens.attention_mask.shape)
    for row in range(ids.shape[0]):
        kept = tokens.input_ids[row][keep[row]]
        ids[row, : len(kept)] = kept
        mask[row, : len(kept)] = 1
    return ids, mask

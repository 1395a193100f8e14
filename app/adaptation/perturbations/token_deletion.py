"""Drop a share of the tokens; the rest close up (and the row is padded again at its end)."""

from __future__ import annotations

import torch

from app.adaptation.perturbations import PERTURBATIONS, Tokens, chosen
from app.schemas.signal import TokenDeletion


@PERTURBATIONS.register("token_deletion")
def token_deletion(
    tokens: Tokens, options: TokenDeletion, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    keep = tokens.attention_mask.bool() & ~chosen(tokens, options.rate, generator)
    ids = torch.full_like(tokens.input_ids, tokens.pad_id)
    mask = torch.zeros_like(tokens.attention_mask)
    for row in range(ids.shape[0]):
        kept = tokens.input_ids[row][keep[row]]
        ids[row, : len(kept)] = kept
        mask[row, : len(kept)] = 1
    return ids, mask

"""Masked-LM pieces (Devlin et al. 2019): token masking and an output layer tied to the input
embeddings, for encoders shipped without their pretraining LM head."""

from __future__ import annotations

import torch
from torch import nn

IGNORE = -100  # cross_entropy's ignore_index: positions that were not masked


def mask_tokens(
    input_ids: torch.Tensor, maskable: torch.Tensor, mask_id: int, rate: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked inputs, targets): `rate` of the maskable tokens become [MASK]; only they are scored."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < rate) & maskable.bool()
    targets = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    return torch.where(chosen, torch.full_like(input_ids, mask_id), input_ids), targets


def tied_lm_logits(encoder: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits from the last layer through the transposed input embedding matrix."""
    return hidden @ encoder.get_input_embeddings().weight.T


def masked_lm_loss(
    encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = tied_lm_logits(encoder, hidden)
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

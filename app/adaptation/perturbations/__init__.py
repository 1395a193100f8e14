"""Perturbations of unlabeled text for consistency training (`consistency.perturbation`): each takes
padded token ids and returns perturbed ids and mask, changing only maskable (real, non-special)
tokens. None needs an outside model (UDA's back-translation would).

The job spec reads each unit's options, so these modules load without torch (registry.py): they
work through the methods of the tensors they are given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.adaptation.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Tokens:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    maskable: torch.Tensor  # bool: real tokens that are not [CLS], [SEP], [PAD]
    mask_id: int
    pad_id: int


Perturb = Callable[[Tokens, Any, "torch.Generator"], "tuple[torch.Tensor, torch.Tensor]"]
PERTURBATIONS: Registry[Perturb] = Registry("perturbation", __name__)


def chosen(tokens: Tokens, rate: float, generator: torch.Generator) -> torch.Tensor:
    """`rate` of the maskable tokens, drawn independently (as torch.rand draws: float32 uniform_)."""
    draws = tokens.input_ids.float().uniform_(0, 1, generator=generator)
    return (draws < rate) & tokens.maskable

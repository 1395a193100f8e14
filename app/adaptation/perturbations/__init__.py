"""Perturbations of unlabeled text for consistency training (`consistency.perturbation`): each takes
padded token ids and returns perturbed ids and mask, changing only maskable (real, non-special)
tokens. None needs an outside model (UDA's back-translation would)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from app.adaptation.registry import Registry, discover


@dataclass(frozen=True)
class Tokens:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    maskable: torch.Tensor  # bool: real tokens that are not [CLS], [SEP], [PAD]
    mask_id: int
    pad_id: int


Perturb = Callable[[Tokens, Any, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
PERTURBATIONS: Registry[Perturb] = Registry("perturbation")


def chosen(tokens: Tokens, rate: float, generator: torch.Generator) -> torch.Tensor:
    """`rate` of the maskable tokens, drawn independently."""
    return (torch.rand(tokens.input_ids.shape, generator=generator) < rate) & tokens.maskable


discover(__name__)

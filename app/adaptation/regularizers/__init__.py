"""Regularizers against forgetting (`optimization.regularizers`): small objects that own their state
(anchors, Fisher, source model) and add `penalty(...)` to the loss at every step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase

from app.adaptation.model import TextClassifier
from app.adaptation.registry import Registry, discover


@dataclass
class RegularizerContext:
    """What a regularizer may need, resolved by whoever runs the engine."""

    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    max_length: int
    batch_size: int
    seed: int
    texts: Mapping[str, list[str]] = field(default_factory=dict)  # dataset id -> texts
    source_models: Mapping[str, TextClassifier] = field(default_factory=dict)  # model id -> model


class Regularizer(Protocol):
    needs_inputs: bool  # True: penalty reads the batch's token ids (so features cannot be cached)

    def penalty(
        self,
        model: TextClassifier,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        logits: torch.Tensor,
    ) -> torch.Tensor: ...


RegularizerFactory = Callable[[Any, RegularizerContext], Regularizer]
REGULARIZERS: Registry[RegularizerFactory] = Registry("regularizer")


def is_pretrained(name: str) -> bool:
    """Weights that came with the base model (not the head, pooling, adapters or LoRA)."""
    return name.startswith("encoder.") and ".adapter." not in name and ".lora_" not in name


discover(__name__)

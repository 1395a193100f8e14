"""Regularizers against forgetting (`optimization.regularizers`): small objects that own their state
(anchors, Fisher, source model) and add `penalty(...)` to the loss at every step.

The job spec reads each unit's options (and the datasets or models they name, `references`), so
these modules load without torch (registry.py): torch is imported where a penalty computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.adaptation.registry import Registry

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from app.adaptation.model import TextClassifier
    from app.adaptation.resources import Resources


@dataclass
class RegularizerContext:
    """What a regularizer may need, resolved by whoever runs the engine."""

    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    max_length: int
    batch_size: int
    seed: int
    text_field: str  # the job's text column, for text the options name
    resources: Resources  # the datasets and models the options name (JobSpec.references)


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
REGULARIZERS: Registry[RegularizerFactory] = Registry("regularizer", __name__)


def is_pretrained(name: str) -> bool:
    """Weights that came with the base model (not the head, pooling, adapters or LoRA)."""
    return name.startswith("encoder.") and ".adapter." not in name and ".lora_" not in name

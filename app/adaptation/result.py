"""What a finished job hands back: the trained model (or an ensemble's members), its labels,
metrics and costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from app.adaptation.model import TextClassifier
    from app.schemas.spec import JobSpec


@dataclass
class AdaptationResult:
    model: TextClassifier | None  # None for an ensemble, whose members hold the models
    tokenizer: PreTrainedTokenizerBase | None
    labels: list[str]
    metrics: dict[str, Any]
    threshold: float | None
    trainable_params: int
    total_params: int
    train_seconds: float
    peak_memory_bytes: int
    members: list[tuple[JobSpec, AdaptationResult]] = field(default_factory=list)  # an ensemble's
    # False on ranks other than 0 of a distributed run: their model is a replica of rank 0's, their
    # metrics hold no test or slice results, and nothing of theirs is saved.
    main: bool = True

"""Feature extraction: the pretrained encoder is frozen and only the new layers train."""

from __future__ import annotations

from app.adaptation.model import TextClassifier
from app.adaptation.strategies import STRATEGIES


@STRATEGIES.register("head_only")
def head_only(model: TextClassifier) -> None:
    model.freeze_encoder()

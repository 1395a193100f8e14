"""Which weights train (registered as `optimization.train`): each strategy freezes what it must."""

from __future__ import annotations

from collections.abc import Callable

from app.adaptation.model import TextClassifier
from app.adaptation.registry import Registry

Strategy = Callable[[TextClassifier], None]
STRATEGIES: Registry[Strategy] = Registry("train strategy", __name__)

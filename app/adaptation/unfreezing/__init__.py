"""Unfreezing schedules (`optimization.unfreezing`): pure functions of the training position that
return the names of the layer groups that train at that point.

Group names (group_names.py): "embeddings", "layer_1" (bottom) .. "layer_n" (top), "new" (pooling and head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.adaptation.registry import Registry


@dataclass(frozen=True)
class Position:
    epoch: int  # 1-based
    step: int  # 0-based, over the whole run
    steps_per_epoch: int
    total_steps: int


UnfreezingSchedule = Callable[[Position, int, Any], frozenset[str]]
UNFREEZING: Registry[UnfreezingSchedule] = Registry("unfreezing schedule", __name__)

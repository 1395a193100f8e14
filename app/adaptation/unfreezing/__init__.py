"""Unfreezing schedules (`optimization.unfreezing`): pure functions of the training position that
return the names of the layer groups that train at that point.

Group names: "embeddings", "layer_1" (bottom) .. "layer_n" (top), "new" (pooling and head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.adaptation.groups import EMBEDDINGS, NEW, layer_name
from app.adaptation.registry import Registry, discover


@dataclass(frozen=True)
class Position:
    epoch: int  # 1-based
    step: int  # 0-based, over the whole run
    steps_per_epoch: int
    total_steps: int


def bottom_up(num_layers: int) -> list[str]:
    return [EMBEDDINGS, *(layer_name(i) for i in range(num_layers)), NEW]


UnfreezingSchedule = Callable[[Position, int, Any], frozenset[str]]
UNFREEZING: Registry[UnfreezingSchedule] = Registry("unfreezing schedule")

discover(__name__)

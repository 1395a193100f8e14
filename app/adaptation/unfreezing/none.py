"""Every group trains from the first step (plain fine-tuning)."""

from __future__ import annotations

from typing import Literal

from app.adaptation.group_names import bottom_up
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec_base import Named


class NoUnfreezing(Named):
    name: Literal["none"] = "none"


@UNFREEZING.register(NoUnfreezing)
def none(position: Position, num_layers: int, options: NoUnfreezing) -> frozenset[str]:
    return frozenset(bottom_up(num_layers))

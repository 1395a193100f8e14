"""Every group trains from the first step (plain fine-tuning)."""

from __future__ import annotations

from app.adaptation.unfreezing import UNFREEZING, Position, bottom_up
from app.schemas.spec import NoUnfreezing


@UNFREEZING.register("none")
def none(position: Position, num_layers: int, options: NoUnfreezing) -> frozenset[str]:
    return frozenset(bottom_up(num_layers))

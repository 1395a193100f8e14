"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT section 3.3): the new layers first, then one more
group from the top down at each epoch (or every `every_steps` steps), until all train."""

from __future__ import annotations

from app.adaptation.unfreezing import UNFREEZING, Position, bottom_up
from app.schemas.spec import Gradual


@UNFREEZING.register("gradual")
def gradual(position: Position, num_layers: int, options: Gradual) -> frozenset[str]:
    unfrozen = position.epoch - 1 if options.every_steps is None else position.step // options.every_steps
    top_down = list(reversed(bottom_up(num_layers)))  # new, layer_n, ..., layer_1, embeddings
    return frozenset(top_down[: 1 + unfrozen])

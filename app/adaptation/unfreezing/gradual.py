"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT section 3.3): the new layers first, then one more
group from the top down at each epoch (or every `every_steps` steps, or evenly over the first
`thaw_fraction` of the run), until all train."""

from __future__ import annotations

from app.adaptation.unfreezing import UNFREEZING, Position, bottom_up
from app.schemas.spec import Gradual


@UNFREEZING.register("gradual")
def gradual(position: Position, num_layers: int, options: Gradual) -> frozenset[str]:
    top_down = list(reversed(bottom_up(num_layers)))  # new, layer_n, ..., layer_1, embeddings
    if options.thaw_fraction is not None:
        # ULMFiT thaws every group before training ends; with a deep model and few epochs, one group
        # per epoch would leave the bottom frozen, so the pace follows the depth instead.
        unfrozen = int(position.step * (len(top_down) - 1) // (options.thaw_fraction * position.total_steps))
    elif options.every_steps is not None:
        unfrozen = position.step // options.every_steps
    else:
        unfrozen = position.epoch - 1
    return frozenset(top_down[: 1 + unfrozen])

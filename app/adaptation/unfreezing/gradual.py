"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT section 3.3): the new layers first, then one more
group from the top down at each epoch (or every `every_steps` steps, or evenly over the first
`thaw_fraction` of the run), until all train."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.adaptation.group_names import bottom_up
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec_base import Named


class Gradual(Named):
    name: Literal["gradual"] = "gradual"
    every_steps: int | None = Field(
        None, ge=1, description="Unfreeze one more group every this many steps; null: once per epoch (ULMFiT)."
    )
    thaw_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Spread the unfreezing evenly over this share of the run, whatever the model's depth, so "
        "that every group trains from then on; null: once per epoch, or every_steps.",
    )

    @model_validator(mode="after")
    def _one_pace(self) -> Gradual:
        if self.every_steps is not None and self.thaw_fraction is not None:
            raise ValueError("gradual unfreezing takes every_steps or thaw_fraction, not both (set the other to null)")
        return self


@UNFREEZING.register(Gradual)
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

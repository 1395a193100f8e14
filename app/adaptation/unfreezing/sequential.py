"""Sequential unfreezing (Chronopoulou et al. 2019, section 2.2): the new parameters for `new_epochs`
epochs, then all but the embeddings for `body_epochs`, then everything until the end."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.adaptation.group_names import EMBEDDINGS, NEW, bottom_up
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec_base import Named


class Sequential(Named):
    name: Literal["sequential"] = "sequential"
    new_epochs: int = Field(1, ge=1, description="Epochs training only the new parameters.")
    body_epochs: int = Field(1, ge=1, description="Then epochs training all but the embeddings.")


@UNFREEZING.register(Sequential)
def sequential(position: Position, num_layers: int, options: Sequential) -> frozenset[str]:
    if position.epoch <= options.new_epochs:
        return frozenset({NEW})
    everything = frozenset(bottom_up(num_layers))
    if position.epoch <= options.new_epochs + options.body_epochs:
        return everything - {EMBEDDINGS}
    return everything

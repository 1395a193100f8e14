"""Sequential unfreezing (Chronopoulou et al. 2019, section 2.2): the new parameters for `new_epochs`
epochs, then all but the embeddings for `body_epochs`, then everything until the end."""

from __future__ import annotations

from app.adaptation.groups import EMBEDDINGS, NEW
from app.adaptation.unfreezing import UNFREEZING, Position, bottom_up
from app.schemas.spec import Sequential


@UNFREEZING.register("sequential")
def sequential(position: Position, num_layers: int, options: Sequential) -> frozenset[str]:
    if position.epoch <= options.new_epochs:
        return frozenset({NEW})
    everything = frozenset(bottom_up(num_layers))
    if position.epoch <= options.new_epochs + options.body_epochs:
        return everything - {EMBEDDINGS}
    return everything

"""Only the new layers and the top encoder layer train, throughout."""

from __future__ import annotations

from app.adaptation.groups import NEW, layer_name
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec import TopOnly


@UNFREEZING.register("top_only")
def top_only(position: Position, num_layers: int, options: TopOnly) -> frozenset[str]:
    return frozenset({NEW, layer_name(num_layers - 1)})

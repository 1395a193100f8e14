"""Only the new layers and the top encoder layer train, throughout."""

from __future__ import annotations

from typing import Literal

from app.adaptation.group_names import NEW, layer_name
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec_base import Named


class TopOnly(Named):
    name: Literal["top_only"] = "top_only"


@UNFREEZING.register(TopOnly)
def top_only(position: Position, num_layers: int, options: TopOnly) -> frozenset[str]:
    return frozenset({NEW, layer_name(num_layers - 1)})

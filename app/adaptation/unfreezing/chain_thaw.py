"""Chain-thaw (Felbo et al. 2017, DeepMoji section 3.3): the new layers alone, then each group alone
from the bottom up (embeddings first), then the whole model. The run's steps are shared evenly
between these n + 3 phases."""

from __future__ import annotations

from typing import Literal

from app.adaptation.group_names import NEW, bottom_up
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec_base import Named


class ChainThaw(Named):
    name: Literal["chain_thaw"] = "chain_thaw"


def phases(num_layers: int) -> list[frozenset[str]]:
    groups = bottom_up(num_layers)
    return [frozenset({NEW}), *(frozenset({g}) for g in groups[:-1]), frozenset(groups)]


@UNFREEZING.register(ChainThaw)
def chain_thaw(position: Position, num_layers: int, options: ChainThaw) -> frozenset[str]:
    plan = phases(num_layers)
    return plan[min(len(plan) - 1, position.step * len(plan) // position.total_steps)]

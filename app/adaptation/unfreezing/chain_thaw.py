"""Chain-thaw (Felbo et al. 2017, DeepMoji section 3.3): the new layers alone, then each group alone
from the bottom up (embeddings first), then the whole model. The run's steps are shared evenly
between these n + 3 phases."""

from __future__ import annotations

from app.adaptation.groups import NEW
from app.adaptation.unfreezing import UNFREEZING, Position, bottom_up
from app.schemas.spec import ChainThaw


def phases(num_layers: int) -> list[frozenset[str]]:
    groups = bottom_up(num_layers)
    return [frozenset({NEW}), *(frozenset({g}) for g in groups[:-1]), frozenset(groups)]


@UNFREEZING.register("chain_thaw")
def chain_thaw(position: Position, num_layers: int, options: ChainThaw) -> frozenset[str]:
    plan = phases(num_layers)
    return plan[min(len(plan) - 1, position.step * len(plan) // position.total_steps)]

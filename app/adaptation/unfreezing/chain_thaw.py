"""Chain-thaw (Felbo et al. 2017, DeepMoji section 3.3): the new layers alone, then each group alone
from the bottom up (embeddings first), then the whole model.

Felbo et al. train every phase to convergence on validation; with one budget of steps, the last
phase (the whole model, the one that makes the final model) gets `final_share` of them and the
n + 2 one-group phases share the rest evenly. An even split over all n + 3 phases left the whole
model a ninth of a MiniLM run, and it scored 8 points under fine_tuning on TREC.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.adaptation.group_names import NEW, bottom_up
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec_base import Named


class ChainThaw(Named):
    name: Literal["chain_thaw"] = "chain_thaw"
    final_share: float = Field(
        0.5, gt=0, lt=1, description="Share of the run's steps for the last phase, the whole model."
    )


def phases(num_layers: int) -> list[frozenset[str]]:
    groups = bottom_up(num_layers)
    return [frozenset({NEW}), *(frozenset({g}) for g in groups[:-1]), frozenset(groups)]


@UNFREEZING.register(ChainThaw)
def chain_thaw(position: Position, num_layers: int, options: ChainThaw) -> frozenset[str]:
    plan = phases(num_layers)
    single = len(plan) - 1  # the one-group phases before the whole model
    final_start = (1 - options.final_share) * position.total_steps
    if position.step >= final_start:
        return plan[-1]
    return plan[min(single - 1, int(position.step * single // final_start))]

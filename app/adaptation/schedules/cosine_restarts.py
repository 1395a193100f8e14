"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017, eq. 5): the run is cut into
`cycles` cycles, each `cycle_mult` times as long as the one before; within a cycle the rate falls
from the peak along half a cosine to zero, then restarts at the peak.

    T_0 = total_steps / sum_{i < cycles} cycle_mult^i,   T_i = T_0 * cycle_mult^i
    lr_t = lr_max * (1 + cos(pi * T_cur / T_i)) / 2

where T_cur counts the steps since the last restart.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec_base import Named


class CosineRestarts(Named):
    name: Literal["cosine_restarts"] = "cosine_restarts"
    cycles: int = Field(3, ge=1, le=100, description="How many cosine cycles the run is cut into (SGDR).")
    cycle_mult: float = Field(
        1.0, ge=1, le=10, description="T_mult: each cycle is this many times as long as the one before."
    )


@SCHEDULES.register(CosineRestarts)
def cosine_restarts(step: int, total_steps: int, options: CosineRestarts) -> float:
    lengths = [options.cycle_mult**i for i in range(options.cycles)]
    scale = total_steps / sum(lengths)  # T_0, in steps
    start, last = 0.0, len(lengths) - 1
    for index, length in enumerate(lengths):
        cycle = length * scale
        if step < start + cycle or index == last:  # the last cycle takes every remaining step
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - start) / cycle)))
        start += cycle
    raise AssertionError("unreachable")

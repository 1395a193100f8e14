"""Slanted triangular learning rates (Howard & Ruder 2018, ULMFiT, eq. 3).

    cut = floor(T * cut_frac)
    p   = t / cut                                    if t < cut
          1 - (t - cut) / (cut * (1 / cut_frac - 1)) otherwise
    lr_t = lr_max * (1 + p * (ratio - 1)) / ratio

A short steep rise to the peak, then a long linear decay to lr_max / ratio.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec_base import Named


class SlantedTriangular(Named):
    name: Literal["slanted_triangular"] = "slanted_triangular"
    cut_frac: float = Field(0.1, gt=0, lt=1, description="Share of steps spent increasing (Howard & Ruder 2018).")
    ratio: float = Field(32, ge=1, description="How much smaller the lowest rate is than the peak.")


@SCHEDULES.register(SlantedTriangular)
def slanted_triangular(step: int, total_steps: int, options: SlantedTriangular) -> float:
    cut = max(1, math.floor(total_steps * options.cut_frac))
    if step < cut:
        p = step / cut
    else:
        p = 1 - (step - cut) / (cut * (1 / options.cut_frac - 1))
    return (1 + max(p, 0.0) * (options.ratio - 1)) / options.ratio

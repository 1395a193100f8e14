"""Linear warm-up, then half a cosine from the peak down to zero (Loshchilov & Hutter 2017, no restarts)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from app.adaptation.schedules import SCHEDULES
from app.adaptation.schedules.linear_warmup import warmup
from app.schemas.spec_base import Named


class Cosine(Named):
    name: Literal["cosine"] = "cosine"
    warmup_fraction: float = Field(0.06, ge=0, lt=1, description="Share of steps spent warming up.")


@SCHEDULES.register(Cosine)
def cosine(step: int, total_steps: int, options: Cosine) -> float:
    rising = warmup(step, total_steps, options.warmup_fraction)
    if rising is not None:
        return rising
    start = int(total_steps * options.warmup_fraction)
    progress = (step - start) / max(1, total_steps - start)
    return 0.5 * (1.0 + math.cos(math.pi * progress))

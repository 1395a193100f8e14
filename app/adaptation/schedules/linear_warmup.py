"""Linear warm-up to the peak over `warmup_fraction` of the steps, then linear decay to zero.

The schedule BERT was fine-tuned with (Devlin et al. 2019, appendix A.3).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec_base import Named


class LinearWarmup(Named):
    name: Literal["linear_warmup"] = "linear_warmup"
    warmup_fraction: float = Field(0.06, ge=0, lt=1, description="Share of steps spent warming up.")


def warmup(step: int, total_steps: int, fraction: float) -> float | None:
    """The warm-up multiplier, or None once warm-up is over."""
    steps = int(total_steps * fraction)
    return (step + 1) / steps if step < steps else None


@SCHEDULES.register(LinearWarmup)
def linear_warmup(step: int, total_steps: int, options: LinearWarmup) -> float:
    rising = warmup(step, total_steps, options.warmup_fraction)
    if rising is not None:
        return rising
    decay_steps = max(1, total_steps - int(total_steps * options.warmup_fraction))
    return max(0.0, (total_steps - step) / decay_steps)

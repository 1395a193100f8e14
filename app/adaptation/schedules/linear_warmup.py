"""Linear warm-up to the peak over `warmup_fraction` of the steps, then linear decay to zero.

The schedule BERT was fine-tuned with (Devlin et al. 2019, appendix A.3).
"""

from __future__ import annotations

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec import OptimizationConfig


@SCHEDULES.register("linear_warmup")
def linear_warmup(step: int, total_steps: int, config: OptimizationConfig) -> float:
    warmup = int(total_steps * config.warmup_fraction)
    if step < warmup:
        return (step + 1) / warmup
    remaining = max(1, total_steps - warmup)
    return max(0.0, (total_steps - step) / remaining)

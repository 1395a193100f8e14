"""The peak learning rate throughout."""

from __future__ import annotations

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec import OptimizationConfig


@SCHEDULES.register("constant")
def constant(step: int, total_steps: int, config: OptimizationConfig) -> float:
    return 1.0

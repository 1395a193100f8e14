"""The peak learning rate throughout."""

from __future__ import annotations

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec import Constant


@SCHEDULES.register("constant")
def constant(step: int, total_steps: int, options: Constant) -> float:
    return 1.0

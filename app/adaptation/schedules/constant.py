"""The peak learning rate throughout."""

from __future__ import annotations

from typing import Literal

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec_base import Named


class Constant(Named):
    name: Literal["constant"] = "constant"


@SCHEDULES.register(Constant)
def constant(step: int, total_steps: int, options: Constant) -> float:
    return 1.0

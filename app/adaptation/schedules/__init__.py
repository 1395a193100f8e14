"""Learning-rate schedules as pure functions: (step, total_steps, config) -> multiplier of the peak lr."""

from __future__ import annotations

from collections.abc import Callable

from app.adaptation.registry import Registry, discover
from app.schemas.spec import OptimizationConfig

Schedule = Callable[[int, int, OptimizationConfig], float]
SCHEDULES: Registry[Schedule] = Registry("lr_schedule")

discover(__name__)

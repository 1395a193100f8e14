"""Learning-rate schedules as pure functions: (step, total_steps, options) -> multiplier of the peak lr.

`step` counts optimisation steps from 0; each group's lr is its own peak times the multiplier, so
discriminative rates keep their ratios throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.adaptation.registry import Registry

Schedule = Callable[[int, int, Any], float]
SCHEDULES: Registry[Schedule] = Registry("lr_schedule", __name__)

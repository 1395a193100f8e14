"""cosine_restarts (SGDR): a new schedule is one module; the spec takes it by name and by its own
options, and it follows Loshchilov & Hutter's formula, restarting at the peak."""

import math

import pytest
from pydantic import ValidationError

from app.adaptation.schedules import SCHEDULES
from app.adaptation.schedules.cosine_restarts import CosineRestarts
from app.schemas.recipes import expand


def curve(options: CosineRestarts, total: int) -> list[float]:
    return [SCHEDULES.get("cosine_restarts")(step, total, options) for step in range(total)]


def test_equal_cycles_each_fall_along_half_a_cosine_and_restart_at_the_peak():
    values = curve(CosineRestarts(cycles=3), 300)
    for start in (0, 100, 200):  # T_0 = 100 steps
        assert values[start] == 1.0
        for t in range(100):
            assert values[start + t] == pytest.approx(0.5 * (1 + math.cos(math.pi * t / 100)))
    assert values[99] < 0.001 and values[100] == 1.0  # the restart


def test_longer_cycles_with_cycle_mult():
    values = curve(CosineRestarts(cycles=3, cycle_mult=2), 700)  # T_0 = 700 / (1 + 2 + 4) = 100
    restarts = [step for step in range(1, 700) if values[step] > values[step - 1]]
    assert restarts == [100, 300]
    assert values[300 + 200] == pytest.approx(0.5)  # halfway through the last, 400-step cycle


def test_a_job_spec_takes_it_by_name_or_with_options():
    raw = {"data": {"train": "ds"}, "optimization": {"lr_schedule": "cosine_restarts"}}
    assert expand(raw).optimization.lr_schedule == CosineRestarts()
    raw["optimization"]["lr_schedule"] = {"name": "cosine_restarts", "cycles": 4, "cycle_mult": 1.5}
    assert expand(raw).optimization.lr_schedule == CosineRestarts(cycles=4, cycle_mult=1.5)
    raw["optimization"]["lr_schedule"] = {"name": "cosine_restarts", "cycles": 0}
    with pytest.raises(ValidationError, match="lr_schedule.cosine_restarts.cycles"):
        expand(raw)

import pytest

from app.adaptation.schedules import SCHEDULES
from app.schemas.spec import OptimizationConfig


def test_linear_warmup_rises_to_the_peak_then_decays_to_zero():
    config = OptimizationConfig(warmup_fraction=0.1)
    values = [SCHEDULES.get("linear_warmup")(step, 100, config) for step in range(100)]
    assert values[0] == pytest.approx(0.1)  # 1/10 of the way up after the first step
    assert values[9] == pytest.approx(1.0)  # peak reached at the end of warm-up
    assert values[10] == pytest.approx(1.0)
    assert values[55] == pytest.approx(0.5)  # halfway through the decay
    assert values[99] == pytest.approx(1 / 90)
    assert all(a <= b for a, b in zip(values[:10], values[1:10], strict=False))
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))


def test_no_warmup_starts_at_the_peak():
    config = OptimizationConfig(warmup_fraction=0.0)
    assert SCHEDULES.get("linear_warmup")(0, 10, config) == 1.0


def test_constant_is_the_peak_throughout():
    config = OptimizationConfig()
    assert {SCHEDULES.get("constant")(s, 50, config) for s in range(50)} == {1.0}

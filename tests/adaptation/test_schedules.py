import math

import pytest

from app.adaptation.schedules import SCHEDULES
from app.adaptation.schedules.constant import Constant
from app.adaptation.schedules.cosine import Cosine
from app.adaptation.schedules.linear_warmup import LinearWarmup
from app.adaptation.schedules.slanted_triangular import SlantedTriangular


def curve(name: str, options, total: int) -> list[float]:
    return [SCHEDULES.get(name)(step, total, options) for step in range(total)]


def test_linear_warmup_rises_to_the_peak_then_decays_to_zero():
    values = curve("linear_warmup", LinearWarmup(warmup_fraction=0.1), 100)
    assert values[0] == pytest.approx(0.1)  # 1/10 of the way up after the first step
    assert values[9] == pytest.approx(1.0)  # peak reached at the end of warm-up
    assert values[10] == pytest.approx(1.0)
    assert values[55] == pytest.approx(0.5)  # halfway through the decay
    assert values[99] == pytest.approx(1 / 90)
    assert values[:10] == sorted(values[:10]) and values[10:] == sorted(values[10:], reverse=True)


def test_no_warmup_starts_at_the_peak():
    assert SCHEDULES.get("linear_warmup")(0, 10, LinearWarmup(warmup_fraction=0.0)) == 1.0


def test_constant_is_the_peak_throughout():
    assert set(curve("constant", Constant(), 50)) == {1.0}


def test_slanted_triangular_is_howard_and_ruders_formula():
    total, cut_frac, ratio = 1000, 0.1, 32
    options = SlantedTriangular(cut_frac=cut_frac, ratio=ratio)
    cut = math.floor(total * cut_frac)
    for t in range(total):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        assert SCHEDULES.get("slanted_triangular")(t, total, options) == pytest.approx((1 + p * (ratio - 1)) / ratio)
    values = curve("slanted_triangular", options, total)
    assert values[0] == pytest.approx(1 / ratio)  # starts at lr_max / ratio
    assert max(values) == values[cut] == pytest.approx(1.0)  # peaks at the cut
    assert values[:cut] == sorted(values[:cut]) and values[cut:] == sorted(values[cut:], reverse=True)
    assert min(values) >= 1 / ratio - 1e-12  # the long decay ends near lr_max / ratio


def test_cosine_warms_up_then_follows_half_a_cosine_to_zero():
    values = curve("cosine", Cosine(warmup_fraction=0.1), 100)
    assert values[9] == pytest.approx(1.0) and values[10] == pytest.approx(1.0)
    assert values[55] == pytest.approx(0.5)  # halfway through the decay: cos(pi/2)
    assert values[99] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))

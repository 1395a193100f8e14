"""p(task) proportional to size^(1/T) (as in multilingual BERT and T5's mixing): T = 1 is
proportional, a large T nears uniform, so small tasks are seen more often than their size says."""

from __future__ import annotations

from app.adaptation.sampling import SAMPLINGS
from app.schemas.signal import Temperature


@SAMPLINGS.register("temperature")
def temperature(sizes: list[int], options: Temperature) -> list[float]:
    scaled = [size ** (1 / options.temperature) for size in sizes]
    return [value / sum(scaled) for value in scaled]

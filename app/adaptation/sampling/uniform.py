"""Every task equally often, whatever its size (small tasks repeat, large ones are cut short)."""

from __future__ import annotations

from app.adaptation.sampling import SAMPLINGS
from app.schemas.signal import Uniform


@SAMPLINGS.register("uniform")
def uniform(sizes: list[int], options: Uniform) -> list[float]:
    return [1 / len(sizes)] * len(sizes)

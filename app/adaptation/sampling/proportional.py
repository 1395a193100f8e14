"""p(task) proportional to its number of batches: every batch is seen about once per epoch."""

from __future__ import annotations

from app.adaptation.sampling import SAMPLINGS
from app.schemas.signal import Proportional


@SAMPLINGS.register("proportional")
def proportional(sizes: list[int], options: Proportional) -> list[float]:
    return [size / sum(sizes) for size in sizes]

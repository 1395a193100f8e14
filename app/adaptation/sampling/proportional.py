"""p(task) proportional to its number of batches: every batch is seen about once per epoch."""

from __future__ import annotations

from typing import Literal

from app.adaptation.sampling import SAMPLINGS
from app.schemas.spec_base import Named


class Proportional(Named):
    name: Literal["proportional"] = "proportional"


@SAMPLINGS.register(Proportional)
def proportional(sizes: list[int], options: Proportional) -> list[float]:
    return [size / sum(sizes) for size in sizes]

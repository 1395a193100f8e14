"""Every task equally often, whatever its size (small tasks repeat, large ones are cut short)."""

from __future__ import annotations

from typing import Literal

from app.adaptation.sampling import SAMPLINGS
from app.schemas.spec_base import Named


class Uniform(Named):
    name: Literal["uniform"] = "uniform"


@SAMPLINGS.register(Uniform)
def uniform(sizes: list[int], options: Uniform) -> list[float]:
    return [1 / len(sizes)] * len(sizes)

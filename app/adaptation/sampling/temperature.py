"""p(task) proportional to size^(1/T) (as in multilingual BERT and T5's mixing): T = 1 is
proportional, a large T nears uniform, so small tasks are seen more often than their size says."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.adaptation.sampling import SAMPLINGS
from app.schemas.spec_base import Named


class Temperature(Named):
    name: Literal["temperature"] = "temperature"
    temperature: float = Field(
        2.0, ge=1, le=100, description="p(task) ~ batches^(1/T): 1 is proportional, large T nears uniform."
    )


@SAMPLINGS.register(Temperature)
def temperature(sizes: list[int], options: Temperature) -> list[float]:
    scaled = [size ** (1 / options.temperature) for size in sizes]
    return [value / sum(scaled) for value in scaled]

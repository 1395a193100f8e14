"""Task sampling (`task_sampling`): the probability of each task being the one a step trains, from
the tasks' sizes in batches (the main task first)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.adaptation.registry import Registry

Sampling = Callable[[list[int], Any], list[float]]
SAMPLINGS: Registry[Sampling] = Registry("task sampling", __name__)

"""The training loss as a learning curve: the main task's mean loss over windows of steps."""

from __future__ import annotations

import math
from typing import Any

import torch


class LossCurve:
    """About `points` points per run whatever its length, so a long job's curve stays small enough
    to store with its metrics. Losses are summed on the device and read once per window: one host
    sync per point, not per step."""

    def __init__(self, total_steps: int, points: int = 100) -> None:
        self.every = max(1, math.ceil(total_steps / points))
        self.total_steps = total_steps
        self._sum: torch.Tensor | None = None
        self._steps = 0

    def add(self, step: int, loss: torch.Tensor | None) -> dict[str, Any] | None:
        """Count step `step`'s loss (None for an auxiliary task's step); a point when a window closes."""
        if loss is not None:
            self._sum = loss.detach().float() if self._sum is None else self._sum + loss.detach().float()
            self._steps += 1
        if step % self.every and step != self.total_steps or not self._steps:
            return None
        point = {"step": step, "loss": round((self._sum / self._steps).item(), 6)}
        self._sum, self._steps = None, 0
        return point

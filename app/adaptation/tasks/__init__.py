"""Task types (`task`): how labels become targets, the loss, probabilities, predictions and metrics.

A label of one example is a string (single_label) or a tuple of strings (multi_label).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from app.adaptation.registry import Registry


class Task(Protocol):
    labels: list[str]  # the label names, in the order of the logits
    threshold: float | None
    multi_label: bool

    def targets(self, gold: Sequence[Any]) -> list[Any]: ...

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor: ...

    def decide(self, probabilities: torch.Tensor) -> list[Any]: ...

    def report(self, gold: Sequence[Any], probabilities: torch.Tensor) -> dict[str, Any]: ...

    def fit_threshold(self, gold: Sequence[Any], probabilities: torch.Tensor) -> None: ...


# A task factory takes the label names and the configured threshold (multi_label; None: tuned).
TaskFactory = Callable[[list[str], float | None], Task]
TASKS: Registry[TaskFactory] = Registry("task", __name__)


def label_names(task: str, gold: Sequence[Any]) -> list[str]:
    """Sorted names of every label seen in `gold`."""
    if task == "multi_label":
        return sorted({name for names in gold for name in names})
    return sorted(set(gold))

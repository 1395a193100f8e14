"""A trained model's report on labeled rows it is given after training (an evaluation run): the
report its card gives for the test split (the task's metrics), and for single_label the ECE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from app.adaptation.calibration import expected_calibration_error
from app.adaptation.tasks import TASKS


def evaluation_report(
    labels: list[str],
    gold: Sequence[Any],
    probabilities: torch.Tensor,
    *,
    multi_label: bool = False,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class metrics and the confusion matrix (single_label; multi_label:
    micro/macro-F1 and per-label metrics at the model's threshold) of `probabilities` (the model's,
    in `labels` order) against `gold`; single_label adds the ECE (Guo et al. 2017, equal-width bins)."""
    task = TASKS.get("multi_label" if multi_label else "single_label")(labels, threshold)
    report = task.report(gold, probabilities)
    if not multi_label:
        report["ece"] = expected_calibration_error(probabilities, torch.tensor(task.targets(gold)))
    return report

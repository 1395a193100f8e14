"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") and the
expected calibration error that measures it.

One scalar T > 0 divides the logits; it is fitted by minimising the negative log-likelihood of the
validation labels, so the argmax (and accuracy) never changes, only how sure the scores are. The
fitted T is folded into the head's last linear layer (W/T, b/T), so every path that serves or
exports the model gives the calibrated probabilities with no code of its own.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from app.adaptation.data import LabeledTexts
from app.adaptation.inference import predict_logits, predict_proba
from app.adaptation.model import TextClassifier
from app.adaptation.tasks import Task
from app.adaptation.trainer import TrainOutcome
from app.schemas.spec import JobSpec

ECE_BINS = 15  # Guo et al.'s M = 15 equal-width confidence bins
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0  # a fit outside this range is a degenerate validation set


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T minimising NLL(softmax(logits / T), targets), found by L-BFGS on log T (T stays > 0)."""
    logits, targets = (
        logits.detach().float().clone(),
        targets.detach().long().clone(),
    )  # inference tensors cannot enter autograd
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of |bin| / n * |accuracy(bin) - confidence(bin)|, bins by top probability."""
    confidence, predicted = probabilities.float().max(dim=-1)
    correct = (predicted == targets.long()).float()
    edges = torch.linspace(0, 1, bins + 1)
    error = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs()
    return float(error)


def fold_temperature(head: nn.Module, temperature: float) -> None:
    """Divide the head's output by `temperature` for good: scale its last linear layer."""
    last = [module for module in head.modules() if isinstance(module, nn.Linear)]
    if not last:
        raise ValueError("the head has no linear layer to fold a temperature into")
    with torch.no_grad():
        last[-1].weight.div_(temperature)
        if last[-1].bias is not None:
            last[-1].bias.div_(temperature)


def settle_on_validation(
    spec: JobSpec,
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    validation: LabeledTexts | None,
    outcome: TrainOutcome,
) -> dict[str, Any] | None:
    """Fit what the kept model's validation rows decide, before anything is tested with it: a
    multi_label threshold (and the metrics under it), or a single_label temperature. Returns the
    calibration (None when there is none)."""
    if validation is None:
        return None
    if task.multi_label:
        probabilities = predict_proba(model, tokenizer, validation.texts, spec.training.max_length, multi_label=True)
        task.fit_threshold(validation.labels, probabilities)
        outcome.best_metrics = task.report(validation.labels, probabilities)
        return None
    if not spec.training.calibrate:
        return None
    logits = predict_logits(model, tokenizer, validation.texts, spec.training.max_length)
    targets = torch.tensor(task.targets(validation.labels))
    temperature = fit_temperature(logits, targets)
    return {
        "method": "temperature_scaling",
        "temperature": temperature,
        "fitted_on": "validation",
        "validation_examples": len(validation),
        "validation_ece_before": expected_calibration_error(logits.softmax(dim=-1), targets),
        "validation_ece_after": expected_calibration_error((logits / temperature).softmax(dim=-1), targets),
    }

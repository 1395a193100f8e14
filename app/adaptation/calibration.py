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
# The NLL's pull towards a softer T comes from the misclassified rows alone; under this many, the fit
# follows those few rows (their texts, not the model's habit), and a temperature fitted on 2 errors
# of 200 made the test ECE of a 99%-accurate model worse. Such a model's scores are left as they are.
MIN_ERRORS = 10
# A fitted T must beat T = 1 by a likelihood-ratio test (Wilks): 2 n (NLL(1) - NLL(T)) is chi-square
# with one degree of freedom when T = 1 is right; 3.84 is its 95% quantile. A T of 1.09 fitted on
# 200 rows passed every other check and still raised the test ECE: the data could not tell it from 1.
LIKELIHOOD_RATIO_95 = 3.841


# Candidate temperatures, evenly spaced in log T (about 1.5% apart): one scalar is found exactly
# enough by a grid, which cannot stall on a flat NLL as a line search can.
LOG_GRID = torch.linspace(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE), 401)


def nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    return float(nn.functional.cross_entropy(logits.float() / temperature, targets.long()))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T minimising NLL(softmax(logits / T), targets) over the grid."""
    losses = torch.tensor([nll(logits, targets, math.exp(g)) for g in LOG_GRID.tolist()])
    return math.exp(float(LOG_GRID[int(losses.argmin())]))


def temperature_refusal(logits: torch.Tensor, targets: torch.Tensor) -> str | None:
    """Why the validation rows cannot be trusted with a temperature, or None when they can.

    A temperature fitted on few rows can fit their noise: a few confident errors soften everything,
    and rows with no error at all sharpen without bound (the NLL falls as T -> 0). So the fit must
    hold out of sample: fitted on each half of the rows (2-fold), it must lower the other half's
    NLL, and the fit on all of them must not sit at the grid's end. Below MIN_ERRORS misclassified
    rows there is too little to fit to at all, and a T that a likelihood-ratio test cannot tell from
    1 is not worth the risk of moving the scores."""
    errors = int((logits.argmax(dim=-1) != targets).sum())
    if errors < MIN_ERRORS:
        return f"the validation rows hold {errors} errors, fewer than the {MIN_ERRORS} a temperature needs"
    temperature = fit_temperature(logits, targets)
    if not MIN_TEMPERATURE * 1.001 < temperature < MAX_TEMPERATURE * 0.999:
        return f"the validation NLL has no minimum inside T {MIN_TEMPERATURE}..{MAX_TEMPERATURE} (too few errors)"
    statistic = 2 * len(targets) * (nll(logits, targets, 1.0) - nll(logits, targets, temperature))
    if statistic < LIKELIHOOD_RATIO_95:
        return (
            f"T = {temperature:.3g} is not distinguishable from 1 on {len(targets)} rows "
            f"(likelihood ratio {statistic:.2f} < {LIKELIHOOD_RATIO_95})"
        )
    halves = (torch.arange(0, len(targets), 2), torch.arange(1, len(targets), 2))
    gain = 0.0
    for fit, check in (halves, halves[::-1]):
        fitted = fit_temperature(logits[fit], targets[fit])
        gain += nll(logits[check], targets[check], 1.0) - nll(logits[check], targets[check], fitted)
    if gain <= 0:
        return "fitted on half of the validation rows, a temperature did not lower the other half's NLL"
    return None


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
    refusal = temperature_refusal(logits, targets)
    temperature = 1.0 if refusal is not None else fit_temperature(logits, targets)
    return {
        "method": "temperature_scaling",
        "temperature": temperature,
        "applied": refusal is None,
        "not_applied_because": refusal,
        "fitted_on": "validation",
        "validation_examples": len(validation),
        "validation_ece_before": expected_calibration_error(logits.softmax(dim=-1), targets),
        "validation_ece_after": expected_calibration_error((logits / temperature).softmax(dim=-1), targets),
    }

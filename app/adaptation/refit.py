"""Refit: choose on held-out rows, then train on every row (the default, `training.refit`).

A job given no validation set holds out a stratified share of train to choose its kept epoch (and,
single_label, its temperature; multi_label, its threshold). Those rows then train too: a fresh model,
from the same starting weights, follows the same schedule on all of train and stops after the chosen
epoch. This is the usual "select, then retrain on train + dev" rule (e.g. Hastie et al., The
Elements of Statistical Learning, 7.10): the choice is made on data the chooser never trained on, and
no row is left out of the model a user gets. What the held-out rows measured (validation metrics,
history) is the choosing run's; the refit model has seen them, so nothing validates it again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from app.adaptation.calibration import settle_on_validation
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.data import LabeledTexts
from app.adaptation.distributed import current_world
from app.adaptation.main_task import MainRun, train_main_task
from app.adaptation.strategies import STRATEGIES
from app.adaptation.trainer import TrainOutcome
from app.schemas.spec import JobSpec

SELECTION = "selection"  # the checkpoints' name of the choosing run, once it has finished


def refit_refusal(spec: JobSpec, held_out: bool) -> str | None:
    """Why this job keeps the model of its choosing run, or None when it refits."""
    if not spec.training.refit:
        return "training.refit is false"
    if not held_out:
        return "no rows were held out from train"
    if spec.main_task_epochs:
        return "a multi-task run with main_task_epochs keeps the model it chose"
    return None


@dataclass
class Selection:
    """What the choosing run hands the refit: the kept epoch and what was fitted on its model."""

    best_epoch: int
    outcome: dict[str, Any]  # the choosing run's TrainOutcome, as a dict
    touched: list[str]  # parameters that trained
    calibration: dict[str, Any] | None = None
    threshold: float | None = None
    seconds: float = 0.0

    def info(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "outcome": self.outcome,
            "touched": self.touched,
            "calibration": self.calibration,
            "threshold": self.threshold,
            "seconds": self.seconds,
        }

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Selection:
        return cls(**info)


def starting_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every weight and buffer as the choosing run starts, for the refit to start from."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@dataclass
class RandomState:
    """torch's generators (dropout) as the choosing run starts, so the refit draws the same."""

    cpu: torch.Tensor
    cuda: list[torch.Tensor]

    @classmethod
    def now(cls) -> RandomState:
        return cls(torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.cuda)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"cpu_rng": self.cpu, **{f"cuda_rng_{i}": state for i, state in enumerate(self.cuda)}}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> RandomState:
        cuda = [tensors[f"cuda_rng_{i}"] for i in range(sum(k.startswith("cuda_rng_") for k in tensors))]
        return cls(tensors["cpu_rng"], cuda)


def choose_then_refit(
    run: MainRun,
    train: LabeledTexts,
    validation: LabeledTexts | None,
    every_row: LabeledTexts,
    checkpoints: Checkpoints | None,
) -> tuple[Selection, TrainOutcome, set[str], float]:
    """The choosing run on `train` (validation: the held-out rows), then a fresh model from the same
    starting weights on `every_row`, stopped after the chosen epoch (refit.py). The seconds returned
    are those of earlier attempts only, which the caller's clock did not see."""
    spec, model, callbacks, task = run.spec, run.model, run.callbacks, run.task
    start, random_state = starting_weights(model), RandomState.now()
    done = checkpoints.finished(SELECTION) if checkpoints is not None else None
    if done is not None:
        random_state = RandomState.from_tensors(done[0])
        selection = Selection.from_info(done[1])
        before = selection.seconds  # an earlier attempt chose; this one's clock did not see it
        if selection.threshold is not None:
            task.threshold = selection.threshold
    else:
        started = time.monotonic()
        outcome, touched, earlier = train_main_task(
            **run.arguments(),
            train=train,
            validation=validation,
            checkpoints=checkpoints.phase("main") if checkpoints is not None else None,
            alone_checkpoints=None,
        )
        model.extra_heads = nn.ModuleDict()
        calibration = settle_on_validation(spec, model, run.tokenizer, task, validation, outcome)
        selection = Selection(
            outcome.best_epoch,
            asdict(outcome),
            sorted(touched),
            calibration,
            task.threshold,
            time.monotonic() - started + earlier,
        )
        before = earlier  # the choosing run's own earlier attempts; this one ran on the caller's clock
        if checkpoints is not None and current_world().is_main:  # rank 0 alone writes checkpoints
            checkpoints.mark_finished(SELECTION, random_state.tensors(), selection.info())
    epochs = spec.training.epochs
    callbacks.on_event(
        "refit",
        f"epoch {selection.best_epoch} of {epochs} chosen on {len(validation or [])} held-out rows; a fresh model "
        f"trains on all {len(every_row)} rows and stops after it",
        {"epoch": selection.best_epoch, "train_examples": len(every_row)},
    )
    model.load_state_dict(start)
    random_state.restore()  # dropout draws as the choosing run's did: the refit is that run on every row
    STRATEGIES.get(spec.optimization.train)(model)
    refit, touched, earlier = train_main_task(
        **run.arguments(),
        train=every_row,
        validation=None,
        checkpoints=checkpoints.phase("refit") if checkpoints is not None else None,
        alone_checkpoints=None,
        last_epoch=selection.best_epoch,
        stage="refit on all rows",
    )
    chosen = TrainOutcome(**selection.outcome)
    outcome = replace(
        chosen,
        steps=chosen.steps + refit.steps,
        features_cached=chosen.features_cached or refit.features_cached,
        resumed_from_step=refit.resumed_from_step if refit.resumed_from_step is not None else chosen.resumed_from_step,
    )
    return selection, outcome, touched | set(selection.touched), before + earlier

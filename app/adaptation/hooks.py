"""Trainer hooks: what a run does besides its steps, called at fixed points of the training loop
(trainer.py), as fastai's and Lightning's callbacks are. The unfreezing schedule's phases
(phases.py), the frozen encoder's feature cache (features.py), the frozen bottom layers' cache
(frozen_cache.py) and checkpoints (checkpoint.py) are hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.adaptation.trainer import Trainer
    from app.adaptation.unfreezing import Position


class Hook:
    """Each method does nothing unless a hook overrides it; `state` is what a checkpoint keeps of
    the hook (JSON), given back by `load_state` when a run resumes."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """After the batches, optimizer and schedule are built, before the first step."""

    def on_step_start(self, trainer: Trainer, position: Position) -> None:
        """Before a step: which weights train, and in which mode."""

    def on_step_end(self, trainer: Trainer, position: Position, batches_done: int, pause: bool) -> None:
        """After a step and its progress report; `pause`: every rank agreed to pause here."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """After an epoch's evaluation, unless early stopping ended the run."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last step, before the best epoch's weights are put back."""

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, trainer: Trainer, state: dict[str, Any]) -> None:
        pass

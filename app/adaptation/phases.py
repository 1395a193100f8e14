"""The phases of an unfreezing schedule (`optimization.unfreezing`), as a trainer hook: before each
step the schedule says which layer groups train (unfreezing/), and when that set changes the
groups' weights are frozen or thawed and the new phase is recorded (an event, `outcome.phases`).

With `none` the strategy decided once, before training, which weights train; the run has one phase,
the groups that hold a trainable weight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.adaptation.hooks import Hook
from app.adaptation.optim import group_learning_rate
from app.adaptation.unfreezing import UNFREEZING, Position

if TYPE_CHECKING:
    from app.adaptation.trainer import Trainer


class UnfreezingPhases(Hook):
    def __init__(self) -> None:
        self.phase: frozenset[str] | None = None

    def on_step_start(self, trainer: Trainer, position: Position) -> None:
        options = trainer.spec.optimization.unfreezing
        if options.name == "none" and self.phase is not None:
            return  # one phase for the whole run
        if options.name == "none":
            named = dict(trainer.model.named_parameters())
            trainable = frozenset(
                g.name for g in trainer.groups if any(named[n].requires_grad for n in g.parameter_names)
            )
        else:
            trainable = UNFREEZING.get(options.name)(position, trainer.model.num_layers, options)
        if trainable == self.phase:
            return
        self.phase = trainable
        self._apply(trainer)
        outcome = trainer.outcome
        record = {
            "phase": len(outcome.phases) + 1,
            "epoch": position.epoch,
            "step": position.step,
            "trainable_groups": [g.name for g in trainer.groups if g.name in trainable],
            "learning_rates": {
                g.name: group_learning_rate(trainer.spec, g) for g in trainer.groups if g.name in trainable
            },
        }
        outcome.phases.append(record)
        trainer.callbacks.on_event(
            "phase", f"phase {record['phase']}: training {', '.join(record['trainable_groups'])}", record
        )

    def _apply(self, trainer: Trainer) -> None:
        if trainer.spec.optimization.unfreezing.name == "none" or self.phase is None:
            return  # the strategy decided once, before training
        named = dict(trainer.model.named_parameters())
        for group in trainer.groups:
            for name in group.parameter_names:
                named[name].requires_grad_(group.name in self.phase)

    def state(self) -> dict[str, Any]:
        return {"phase": None if self.phase is None else sorted(self.phase)}

    def load_state(self, trainer: Trainer, state: dict[str, Any]) -> None:
        if state.get("phase") is not None:
            self.phase = frozenset(state["phase"])
            self._apply(trainer)

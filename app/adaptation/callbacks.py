"""How the engine reports to whoever runs it (the worker, a test, a notebook) and learns to stop."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class Progress:
    stage: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    elapsed_seconds: float
    loss: float | None = None
    learning_rate: float | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


class Callbacks(Protocol):
    def on_progress(self, progress: Progress) -> None: ...

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None: ...

    def should_stop(self) -> bool: ...

    def should_pause(self) -> bool: ...


class SilentCallbacks:
    """For runs nobody watches."""

    def on_progress(self, progress: Progress) -> None:
        pass

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def should_pause(self) -> bool:
        return False


class Cancelled(Exception):
    """Raised inside the training loop when the caller asked it to stop."""


class Paused(Exception):
    """Raised inside the training loop when the caller asked it to pause: a checkpoint was written
    just before, and a later run with the same checkpoints goes on from it."""


class Labelled:
    """Reports of one part of a job (a stage, an ensemble member), marked as that part's."""

    def __init__(self, callbacks: Callbacks, label: str, data: dict[str, Any]) -> None:
        self.callbacks, self.label, self.data = callbacks, label, data

    def on_progress(self, progress: Progress) -> None:
        self.callbacks.on_progress(replace(progress, stage=f"{self.label}: {progress.stage}"))

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self.callbacks.on_event(kind, f"{self.label}: {message}", {**data, **self.data})

    def should_stop(self) -> bool:
        return self.callbacks.should_stop()

    def should_pause(self) -> bool:
        return self.callbacks.should_pause()

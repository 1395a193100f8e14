"""Checkpoints of a training run: enough to go on after the process dies as if it never had.

A checkpoint holds the model's weights, AdamW's moments, the lr schedule's position, every random
state that matters (data order and dropout), where in its epoch the run stood, and the best epoch
so far (its metrics and weights, for early stopping and for restoring it at the end).

Only safetensors and JSON are written and read: nothing unpickled is ever loaded. Each checkpoint
is a folder of its own; the `LATEST` file, replaced atomically after the folder is complete, names
the one to resume from, so a crash while writing leaves the previous checkpoint whole.

`Checkpointing` is the trainer hook that writes them as a run goes and resumes from the last one;
what a checkpoint holds is the trainer's (`Trainer.state`) and its hooks' (`Hook.state`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from app.adaptation import distributed
from app.adaptation.callbacks import Paused
from app.adaptation.hooks import Hook

if TYPE_CHECKING:
    from app.adaptation.trainer import Trainer
    from app.adaptation.unfreezing import Position

LATEST = "LATEST"


@dataclass
class TrainingState:
    epoch: int  # the epoch to go on with (1-based)
    batches_done: int  # batches of that epoch already trained
    epoch_rng_state: tuple  # the data-order Random's state when that epoch began
    torch_rng_state: torch.Tensor  # dropout
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_state: dict[str, torch.Tensor]
    bookkeeping: dict[str, Any] = field(default_factory=dict)  # outcome, phase, touched, elapsed
    cuda_rng_state: torch.Tensor | None = None


class Checkpoints:
    """Checkpoints of one run in `directory`, written every `every_steps` optimizer steps and at
    every epoch's end."""

    def __init__(self, directory: Path, every_steps: int) -> None:
        if every_steps < 1:
            raise ValueError("every_steps must be at least 1")
        self.directory, self.every_steps = directory, every_steps

    def save(self, state: TrainingState, step: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"step-{step:09d}"
        target = self.directory / name
        partial = self.directory / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        tensors, document = _flatten(state)
        save_file(tensors, partial / "tensors.safetensors")
        (partial / "state.json").write_text(json.dumps(document))
        _fsync_dir(partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        pointer = self.directory / f".{LATEST}.partial"
        pointer.write_text(name)
        os.replace(pointer, self.directory / LATEST)
        _fsync_dir(self.directory)
        for old in self.directory.iterdir():  # earlier checkpoints, and leftovers of a crash
            if old.name in (name, LATEST):
                continue
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        return target

    def load(self) -> TrainingState | None:
        pointer = self.directory / LATEST
        if not pointer.exists():
            return None
        folder = self.directory / pointer.read_text().strip()
        document = json.loads((folder / "state.json").read_text())
        # Each tensor copied into memory of its own: one read in place from the file can sit at an
        # address whose alignment sends a reduction down other SIMD lanes, and an L-BFGS step on
        # the restored curvature pairs then differs from the unbroken run's in the last bits.
        tensors = {name: tensor.clone() for name, tensor in load_file(folder / "tensors.safetensors").items()}
        return _unflatten(tensors, document)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    # A job of several runs (stages, ensemble members, a main-task finish) keeps each run's
    # checkpoints in a folder of its own, and what each finished run handed on, so that a resumed
    # job skips what it finished. Such a job never saves in the root folder itself, whose `save`
    # would remove the others.

    def phase(self, name: str) -> Checkpoints:
        return Checkpoints(self.directory / "phases" / name, self.every_steps)

    def finished_dir(self, name: str) -> Path:
        """Where the run `name` may leave files of its own when it finishes (an ensemble member's model)."""
        return self.directory / "finished" / name

    def finished(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The weights that the run `name` handed on, and what it reported, if it finished."""
        path = self.directory / "finished" / f"{name}.safetensors"
        if not path.exists():
            return None
        with safe_open(path, "pt") as handle:
            info = json.loads((handle.metadata() or {}).get("info", "{}"))
        return load_file(path), info

    def mark_finished(self, name: str, weights: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        folder = self.directory / "finished"
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.partial"
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}
        save_file(tensors, partial, metadata={"info": json.dumps(info)})
        os.replace(partial, folder / f"{name}.safetensors")
        shutil.rmtree(self.directory / "phases" / name, ignore_errors=True)


class Checkpointing(Hook):
    """A trainer hook: resume from the last checkpoint when there is one; write one every
    `every_steps` steps, at every epoch's end but the last, and at a pause, which then ends the run
    (`Paused`). Without this hook a run cannot pause. Rank 0 alone writes; every rank of a resumed
    run reads the same checkpoint (the replicas are equal)."""

    def __init__(self, checkpoints: Checkpoints) -> None:
        self.checkpoints = checkpoints

    def on_fit_start(self, trainer: Trainer) -> None:
        # Rank 0 alone writes checkpoints, and after a pause it may still be writing the last one
        # when another rank starts the next run: no rank reads until every rank is here.
        distributed.wait_for_every_rank(trainer.world)
        saved = self.checkpoints.load()
        if saved is not None:
            trainer.load_state(saved)

    def on_step_end(self, trainer: Trainer, position: Position, batches_done: int, pause: bool) -> None:
        if batches_done == trainer.per_epoch:
            return  # the epoch's end writes its own checkpoint, after evaluating
        step = trainer.outcome.steps
        if pause or step % self.checkpoints.every_steps == 0:
            self._save(trainer, position.epoch, batches_done, trainer.epoch_rng_state)
        if pause:
            raise Paused(f"paused at step {step} of {trainer.total_steps}")

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if epoch < trainer.spec.training.epochs:
            self._save(trainer, epoch + 1, 0, trainer.rng.getstate())

    def _save(self, trainer: Trainer, epoch: int, batches_done: int, epoch_rng_state: tuple) -> None:
        if trainer.world.is_main:
            self.checkpoints.save(trainer.state(epoch, batches_done, epoch_rng_state), trainer.outcome.steps)


def _fsync_dir(path: Path) -> None:
    for child in path.iterdir():
        if child.is_file():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---- safetensors for tensors, JSON for everything else ---------------------------------------------


TENSOR_LIST = "__tensor_list__"  # an optimizer slot that holds a list of tensors: its length


def _flatten(state: TrainingState) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    for prefix, weights in (("model", state.model), ("best", state.best_state)):
        for key, value in weights.items():
            tensors[f"{prefix}/{key}"] = value.detach().cpu().contiguous().clone()
    moments: dict[str, dict[str, Any]] = {}
    for index, slots in state.optimizer["state"].items():
        moments[str(index)] = {}
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{slot}"] = value.detach().cpu().contiguous().clone()
            elif isinstance(value, list) and any(isinstance(item, torch.Tensor) for item in value):
                # L-BFGS keeps its curvature pairs as lists of tensors (some entries None)
                for position, item in enumerate(value):
                    if item is not None:
                        tensors[f"optimizer/{index}/{slot}/{position}"] = item.detach().cpu().contiguous().clone()
                moments[str(index)][slot] = {TENSOR_LIST: len(value)}
            else:
                moments[str(index)][slot] = value
    tensors["rng/torch"] = state.torch_rng_state
    if state.cuda_rng_state is not None:
        tensors["rng/cuda"] = state.cuda_rng_state
    version, internal, gauss = state.epoch_rng_state
    document = {
        "epoch": state.epoch,
        "batches_done": state.batches_done,
        "epoch_rng_state": [version, list(internal), gauss],
        "optimizer_param_groups": state.optimizer["param_groups"],
        "optimizer_scalars": moments,
        "scheduler": state.scheduler,
        "bookkeeping": state.bookkeeping,
    }
    return tensors, document


def _unflatten(tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> TrainingState:
    def under(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

    optimizer_state: dict[int, dict[str, Any]] = {
        int(index): dict(scalars) for index, scalars in document["optimizer_scalars"].items()
    }
    for slots in optimizer_state.values():
        for slot, value in slots.items():
            if isinstance(value, dict) and TENSOR_LIST in value:
                slots[slot] = [None] * value[TENSOR_LIST]
    for key, value in under("optimizer").items():
        index, slot = key.split("/", 1)
        slot, _, position = slot.partition("/")
        slots = optimizer_state.setdefault(int(index), {})
        if position:
            slots[slot][int(position)] = value
        else:
            slots[slot] = value
    version, internal, gauss = document["epoch_rng_state"]
    return TrainingState(
        epoch=document["epoch"],
        batches_done=document["batches_done"],
        epoch_rng_state=(version, tuple(internal), gauss),
        torch_rng_state=tensors["rng/torch"],
        cuda_rng_state=tensors.get("rng/cuda"),
        model=under("model"),
        optimizer={"state": optimizer_state, "param_groups": document["optimizer_param_groups"]},
        scheduler=document["scheduler"],
        best_state=under("best"),
        bookkeeping=document["bookkeeping"],
    )

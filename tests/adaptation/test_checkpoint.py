"""A run that dies or pauses and goes on from its checkpoint ends exactly where an unbroken run ends."""

from pathlib import Path

import pytest
import torch

from app.adaptation import Cancelled, Checkpoints, Paused, SilentCallbacks, TaskData, adapt
from app.adaptation.checkpoint import LATEST
from app.schemas.recipes import expand
from tests.utils.data import sentiment

DATA = TaskData(sentiment(160, seed=1), sentiment(40, seed=2))  # 10 batches of 16 per epoch


def spec(recipe: str = "fine_tuning", **optimization):
    raw = {
        "base_model": "tiny-bert",
        "recipe": recipe,
        "data": {"train": "ds"},
        "training": {"epochs": 3, "learning_rate": 1e-3, "batch_size": 16},
    }
    if optimization:
        raw["optimization"] = optimization
    return expand(raw)


class Interrupt(SilentCallbacks):
    """Stops (like a killed process) or pauses the run after `step` steps; records what happened."""

    def __init__(self, step: int | None = None, pause: bool = False) -> None:
        self.step, self.pause, self.seen, self.events = step, pause, 0, []

    def on_progress(self, progress):
        self.seen = progress.step

    def on_event(self, kind, message, data):
        self.events.append((kind, data))

    def should_stop(self):
        return not self.pause and self.step is not None and self.seen >= self.step

    def should_pause(self):
        return self.pause and self.step is not None and self.seen >= self.step


def run(job, tiny_model_dir: Path, directory: Path, callbacks=None):
    return adapt(job, DATA, tiny_model_dir, callbacks, progress_interval=0.0, checkpoints=Checkpoints(directory, 4))


def assert_same_model(a, b):
    first, second = a.model.state_dict(), b.model.state_dict()
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"weights differ after resuming: {different[:5]}"
    assert a.metrics["history"] == b.metrics["history"] and a.metrics["best_epoch"] == b.metrics["best_epoch"]
    # 30 steps: a curve point per step, so the checkpoint falls between points and the curve comes back whole.
    assert a.metrics["loss_curve"] == b.metrics["loss_curve"] and len(a.metrics["loss_curve"]) == 30


@pytest.mark.parametrize(
    ("job", "crash_at", "resumed_at"),
    [
        (spec(), 14, 12),  # mid-epoch 2: the checkpoint every 4 steps, at step 12
        (spec(), 11, 10),  # just after epoch 1's end: its checkpoint, after evaluating
        # Gradual unfreezing and discriminative rates: the phase, which weights were touched, and
        # each group's learning rate must come back too.
        (spec("ulmfit", unfreezing={"name": "gradual", "every_steps": 8, "thaw_fraction": None}), 22, 20),
    ],
    ids=["mid-epoch", "epoch-end", "gradual-unfreezing"],
)
def test_a_run_that_dies_goes_on_to_the_same_weights(job, crash_at, resumed_at, tiny_model_dir, tmp_path):
    unbroken = run(job, tiny_model_dir, tmp_path / "unbroken")
    crashing = Interrupt(crash_at)
    with pytest.raises(Cancelled):
        run(job, tiny_model_dir, tmp_path / "broken", crashing)
    resumed_callbacks = Interrupt()
    resumed = run(job, tiny_model_dir, tmp_path / "broken", resumed_callbacks)
    assert_same_model(unbroken, resumed)
    assert resumed.metrics["resumed_from_step"] == resumed_at and unbroken.metrics["resumed_from_step"] is None
    (kind, data), *_ = [(k, d) for k, d in resumed_callbacks.events if k == "resumed"]
    assert data["step"] == resumed_at
    # The resumed run does not redo the evaluations before the checkpoint.
    evaluated = [d["epoch"] for k, d in resumed_callbacks.events if k == "evaluated"]
    assert evaluated == [e for e in (1, 2, 3) if e * 10 > resumed_at]


def test_pause_writes_a_checkpoint_where_it_stops_and_resume_goes_on(tiny_model_dir, tmp_path):
    job = spec()
    unbroken = run(job, tiny_model_dir, tmp_path / "unbroken")
    with pytest.raises(Paused, match="paused at step 7 of 30"):
        run(job, tiny_model_dir, tmp_path / "paused", Interrupt(7, pause=True))
    assert (tmp_path / "paused" / LATEST).read_text() == "step-000000007"
    resumed = run(job, tiny_model_dir, tmp_path / "paused")
    assert resumed.metrics["resumed_from_step"] == 7
    assert_same_model(unbroken, resumed)


def test_a_checkpoint_is_safetensors_and_json_and_a_torn_write_is_ignored(tiny_model_dir, tmp_path):
    job = spec()
    with pytest.raises(Cancelled):
        run(job, tiny_model_dir, tmp_path, Interrupt(6))
    assert (tmp_path / LATEST).read_text() == "step-000000004"
    files = {p.name for p in (tmp_path / "step-000000004").iterdir()}
    assert files == {"tensors.safetensors", "state.json"}
    # A crash while writing the next checkpoint leaves a partial folder; LATEST still names a whole one.
    torn = tmp_path / ".step-000000008.partial"
    torn.mkdir()
    (torn / "tensors.safetensors").write_bytes(b"half a file")
    state = Checkpoints(tmp_path, 4).load()
    assert state is not None and state.epoch == 1 and state.batches_done == 4
    resumed = run(job, tiny_model_dir, tmp_path)
    assert resumed.metrics["resumed_from_step"] == 4
    assert not torn.exists()  # the next checkpoint cleaned it up


def test_a_full_batch_head_fit_goes_on_from_its_checkpoint_to_the_same_weights(tiny_model_dir, tmp_path):
    """L-BFGS keeps its curvature pairs (lists of tensors) in its state: they come back too."""
    job = expand(
        {
            "base_model": "tiny-bert",
            "recipe": "feature_extraction",
            "data": {"train": "ds"},
            "training": {"epochs": 3, "batch_size": 16},
        }
    )
    assert job.optimization.head_fit == "lbfgs"
    unbroken = run(job, tiny_model_dir, tmp_path / "unbroken")
    with pytest.raises(Cancelled):
        run(job, tiny_model_dir, tmp_path / "broken", Interrupt(2))  # one full-batch step an epoch
    resumed = run(job, tiny_model_dir, tmp_path / "broken", Interrupt())
    assert resumed.metrics["resumed_from_step"] == 1  # stopped in epoch 2: from the end of epoch 1
    first, second = unbroken.model.state_dict(), resumed.model.state_dict()
    assert [k for k in first if not torch.equal(first[k], second[k])] == []
    assert unbroken.metrics["history"] == resumed.metrics["history"]

"""Refit (the default): the epoch is chosen on rows held out from train, then a fresh model trains
on every row and stops after that epoch; a job resumed after its choosing run finished goes on."""

import pytest
import torch

from app.adaptation import Cancelled, Checkpoints, SilentCallbacks, TaskData, adapt
from app.adaptation.refit import refit_refusal
from tests.adaptation.helpers import job
from tests.adaptation.test_checkpoint import Interrupt
from tests.utils.data import sentiment

ROWS = sentiment(160, seed=1)  # a tenth held out: 144 rows choose, in 9 batches of 16; all 160 make 10


def assert_same_weights(a, b):
    first, second = a.model.state_dict(), b.model.state_dict()
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"weights differ: {different[:5]}"


class Events(SilentCallbacks):
    def __init__(self):
        self.events = []

    def on_event(self, kind, message, data):
        self.events.append((kind, data))


def test_with_the_last_epoch_chosen_the_refit_model_is_the_model_of_a_run_on_every_row(tiny_model_dir):
    # One epoch: the choosing run can only keep it, so the refit follows the whole schedule.
    refit = adapt(job(training={"epochs": 1, "calibrate": False}), TaskData(ROWS), tiny_model_dir)
    every_row = adapt(
        job(training={"epochs": 1, "calibrate": False}, data={"validation_fraction": 0}), TaskData(ROWS), tiny_model_dir
    )
    assert refit.metrics["refit"] == {"epochs": 1, "train_examples": 160}
    assert refit.metrics["validation_held_out_from_train"] is True
    assert_same_weights(refit, every_row)
    assert every_row.metrics["refit"] is None


def test_the_refit_stops_after_the_chosen_epoch_and_reports_the_choosing_runs_validation(tiny_model_dir):
    callbacks = Events()
    spec = job(training={"epochs": 4, "learning_rate": 3e-2})  # too high: a late epoch may be worse
    result = adapt(spec, TaskData(ROWS), tiny_model_dir, callbacks)
    best = result.metrics["best_epoch"]
    assert result.metrics["refit"] == {"epochs": best, "train_examples": 160}
    assert len(result.metrics["history"]) == 4  # the choosing run's evaluations, one per epoch
    assert result.metrics["accuracy"] == max(h["accuracy"] for h in result.metrics["history"])
    (kind, data), *_ = [(k, d) for k, d in callbacks.events if k == "refit"]
    assert data == {"epoch": best, "train_examples": 160}
    evaluated = [d["epoch"] for k, d in callbacks.events if k == "evaluated"]
    assert evaluated == [1, 2, 3, 4]  # nothing evaluates the refit: it has seen the held-out rows


def test_refit_false_and_a_given_validation_set_keep_the_model_that_was_chosen(tiny_model_dir):
    callbacks = Events()
    kept = adapt(job(training={"epochs": 1, "refit": False}), TaskData(ROWS), tiny_model_dir, callbacks)
    assert kept.metrics["refit"] is None
    assert ("refit_skipped", {"reason": "training.refit is false"}) in callbacks.events
    given = adapt(job(training={"epochs": 1}), TaskData(ROWS, sentiment(40, seed=2)), tiny_model_dir)
    assert given.metrics["refit"] is None and given.metrics["validation_held_out_from_train"] is False


def test_refit_refusals_name_their_reason():
    assert refit_refusal(job(), held_out=True) is None
    assert refit_refusal(job(), held_out=False) == "no rows were held out from train"
    assert refit_refusal(job(training={"refit": False}), held_out=True) == "training.refit is false"


def test_a_job_that_dies_in_its_refit_goes_on_without_choosing_again(tiny_model_dir, tmp_path):
    spec = job(training={"epochs": 2})

    def run(directory, callbacks=None):
        return adapt(spec, TaskData(ROWS), tiny_model_dir, callbacks, 0.0, checkpoints=Checkpoints(directory, 4))

    unbroken = run(tmp_path / "unbroken")
    crashing = RefitInterrupt(step=13)
    with pytest.raises(Cancelled):
        run(tmp_path / "broken", crashing)
    resumed_callbacks = Interrupt()
    resumed = run(tmp_path / "broken", resumed_callbacks)
    assert_same_weights(unbroken, resumed)
    kinds = [k for k, _ in resumed_callbacks.events]
    assert "evaluated" not in kinds  # the choosing run finished before the crash: not run again
    assert ("resumed" in kinds) and resumed.metrics["calibration"] == unbroken.metrics["calibration"]


class RefitInterrupt(Interrupt):
    """Stops the run once the refit has made `step` steps."""

    def on_progress(self, progress):
        if progress.stage == "refit on all rows":
            self.seen = progress.step

    def should_stop(self):
        return self.seen >= self.step


def test_train_seconds_count_the_choosing_run_once(tiny_model_dir, tmp_path):
    import time

    spec = job(training={"epochs": 2})
    started = time.monotonic()
    result = adapt(spec, TaskData(ROWS), tiny_model_dir, checkpoints=Checkpoints(tmp_path / "c", 4))
    assert 0 < result.train_seconds <= time.monotonic() - started

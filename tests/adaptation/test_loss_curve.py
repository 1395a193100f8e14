"""The learning curve's training loss: window means of the main task's loss, about 100 points a run."""

import pytest
import torch

from app.adaptation import TaskData, adapt
from app.adaptation.loss_curve import LossCurve
from tests.adaptation.helpers import job
from tests.utils.data import sentiment


def test_each_point_is_the_mean_of_its_window_and_auxiliary_steps_do_not_count():
    curve = LossCurve(total_steps=7, points=3)  # windows of 3 steps: 1-3, 4-6, and the last step 7
    losses = [1.0, 2.0, None, 4.0, 5.0, 6.0, 9.0]  # step 3 was an auxiliary task's
    points = [curve.add(step, None if x is None else torch.tensor(x)) for step, x in enumerate(losses, start=1)]
    assert [p for p in points if p is not None] == [
        {"step": 3, "loss": 1.5},
        {"step": 6, "loss": 5.0},
        {"step": 7, "loss": 9.0},
    ]


def test_a_window_of_auxiliary_steps_only_has_no_point():
    curve = LossCurve(total_steps=4, points=2)
    assert [curve.add(step, None) for step in (1, 2)] == [None, None]
    curve.add(3, torch.tensor(2.0))
    assert curve.add(4, torch.tensor(4.0)) == {"step": 4, "loss": 3.0}


@pytest.mark.parametrize("total_steps", [1, 99, 100, 101, 1000, 12345])
def test_a_run_of_any_length_has_at_most_about_a_hundred_points_ending_at_its_last_step(total_steps):
    curve = LossCurve(total_steps)
    points = [p for step in range(1, total_steps + 1) if (p := curve.add(step, torch.tensor(1.0)))]
    assert len(points) <= 101 and points[-1]["step"] == total_steps
    assert all(p["loss"] == 1.0 for p in points)


def test_a_job_reports_its_curve_and_the_loss_falls(tiny_model_dir):
    data = TaskData(sentiment(320, seed=1), sentiment(64, seed=2))
    result = adapt(job(training={"epochs": 3, "learning_rate": 1e-3}), data, tiny_model_dir)
    curve = result.metrics["loss_curve"]
    assert [p["step"] for p in curve] == list(range(1, 61))  # 20 batches x 3 epochs, fewer than 100 steps
    first, last = (sum(p["loss"] for p in part) / 5 for part in (curve[:5], curve[-5:]))
    assert first > 0.6 and last < 0.75 * first, curve  # from about ln 2 (a coin) down: it learns

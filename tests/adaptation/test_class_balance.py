"""Class weights (`training.class_weights`) and the imbalance warning."""

import pytest
import torch
from pydantic import ValidationError

from app.adaptation import InvalidTaskData, LabeledTexts, SilentCallbacks, TaskData, adapt
from app.adaptation.class_balance import IMBALANCE_RATIO, class_weights, imbalance
from app.adaptation.tasks import TASKS
from tests.adaptation.helpers import job
from tests.utils.data import sentiment


def test_balanced_weights_are_scikit_learns():
    gold = ["a"] * 6 + ["b"] * 2
    assert class_weights("balanced", gold, ["a", "b"]) == pytest.approx([8 / (2 * 6), 8 / (2 * 2)])


def test_given_weights_default_to_one_and_unknown_labels_are_named():
    assert class_weights({"b": 3.0}, ["a", "b"], ["a", "b"]) == [1.0, 3.0]
    with pytest.raises(ValueError, match="'c'"):
        class_weights({"c": 2.0}, ["a", "b"], ["a", "b"])


def test_imbalance_is_reported_from_the_ratio_on():
    assert imbalance(["a"] * 9 + ["b"]) is None
    skew = imbalance(["a"] * int(IMBALANCE_RATIO * 3) + ["b"] * 3 + ["c"] * 5)
    assert skew == {"largest": "a", "largest_count": 30, "smallest": "b", "smallest_count": 3, "ratio": 10.0}


def test_the_weighted_loss_is_the_weighted_cross_entropy():
    task = TASKS.get("single_label")(["a", "b"], None)
    logits, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 1])
    task.weigh([1.0, 4.0])
    per_row = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weights = torch.tensor([1.0, 4.0, 4.0])
    assert task.loss(logits, targets).item() == pytest.approx(((per_row * weights).sum() / weights.sum()).item())


class Events(SilentCallbacks):
    def __init__(self):
        self.events = []

    def on_event(self, kind, message, data):
        self.events.append((kind, message, data))


def skewed(n_major: int, n_minor: int) -> LabeledTexts:
    rows = sentiment(4 * (n_major + n_minor), seed=5)
    major = [i for i, label in enumerate(rows.labels) if label == rows.labels[0]][:n_major]
    minor = [i for i, label in enumerate(rows.labels) if label != rows.labels[0]][:n_minor]
    return rows.subset(major + minor)


def test_an_imbalanced_job_warns_and_weighs_its_classes(tiny_model_dir):
    callbacks = Events()
    train = skewed(110, 10)
    adapt(job(training={"epochs": 1, "class_weights": "balanced"}), TaskData(train), tiny_model_dir, callbacks)
    (_, message, data), *_ = [e for e in callbacks.events if e[0] == "data_quality"]
    assert data["issue"] == "class_imbalance" and data["ratio"] >= IMBALANCE_RATIO
    assert "macro_f1" in message
    (_, _, weights), *_ = [e for e in callbacks.events if e[0] == "class_weights"]
    # 99 + 9 rows train (a tenth of each class held out): the minority weighs 11 times the majority.
    counts = {label: train.labels.count(label) for label in set(train.labels)}
    assert weights["weights"][data["smallest"]] > weights["weights"][data["largest"]] * 5
    assert set(weights["weights"]) == set(counts)


def test_unknown_labels_in_the_weights_fail_the_job_with_their_names(tiny_model_dir):
    with pytest.raises(InvalidTaskData, match="'neutral'"):
        adapt(
            job(training={"epochs": 1, "class_weights": {"neutral": 2.0}}),
            TaskData(sentiment(40, seed=1)),
            tiny_model_dir,
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "multi_label", "training": {"class_weights": "balanced"}}, "training.class_weights applies to"),
        ({"training": {"class_weights": {"a": 0}}}, "training.class_weights: every weight must be above 0"),
        ({"task": "multi_label", "abstain_below": 0.5}, "abstain_below applies to task 'single_label' only"),
    ],
)
def test_the_spec_refuses_weights_it_cannot_use(overrides, message):
    with pytest.raises(ValidationError, match=message):
        job(**overrides)

"""The engine on a tiny random BERT: it learns, is reproducible, freezes what it says, keeps the best."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.adaptation import (
    Cancelled,
    InvalidTaskData,
    LabeledTexts,
    SilentCallbacks,
    TaskData,
    adapt,
    load_classifier,
    predict_proba,
    save_classifier,
)
from app.adaptation.single import evaluate
from app.schemas.recipes import expand
from tests.utils.data import sentiment


def single(labels):
    from app.adaptation.tasks import TASKS

    return TASKS.get("single_label")(labels, None)


def spec(**training):
    return expand(
        {
            "base_model": "tiny-bert",
            "data": {"train": "ds"},
            "training": {"epochs": 3, "learning_rate": 1e-3, "batch_size": 16, **training},
        }
    )


@pytest.fixture(scope="module")
def task() -> TaskData:
    return TaskData(sentiment(300, seed=1), sentiment(100, seed=2), sentiment(100, seed=3))


@pytest.fixture(scope="module")
def trained(task, tiny_model_dir):
    return adapt(spec(), task, tiny_model_dir)


def test_fine_tuning_learns_a_separable_task(trained):
    assert trained.metrics["accuracy"] >= 0.95
    assert trained.metrics["test"]["accuracy"] >= 0.95
    assert trained.labels == ["negative", "positive"]
    assert [h["epoch"] for h in trained.metrics["history"]] == [1, 2, 3]


def test_the_kept_model_is_the_best_evaluation(trained, task):
    best = max(trained.metrics["history"], key=lambda h: h["accuracy"])
    assert trained.metrics["best_epoch"] == best["epoch"]
    again = evaluate(trained.model, trained.tokenizer, task.validation, single(trained.labels), 64)
    assert again["accuracy"] == trained.metrics["accuracy"]


def test_best_epoch_is_restored_not_the_last(task, tiny_model_dir):
    # A learning rate far too high wrecks later epochs; the first epoch's weights must come back.
    result = adapt(spec(learning_rate=0.5, epochs=3, seed=2), task, tiny_model_dir)
    history = result.metrics["history"]
    assert result.metrics["best_epoch"] < len(history)  # this run peaks early, then collapses
    assert result.metrics["accuracy"] == max(h["accuracy"] for h in history)
    again = evaluate(result.model, result.tokenizer, task.validation, single(result.labels), 64)
    assert again["accuracy"] == result.metrics["accuracy"]


def test_same_seed_same_weights_other_seed_other_weights(task, tiny_model_dir):
    small = TaskData(task.train.subset(range(64)), task.validation)
    a = adapt(spec(epochs=1, seed=7), small, tiny_model_dir).model.state_dict()
    b = adapt(spec(epochs=1, seed=7), small, tiny_model_dir).model.state_dict()
    c = adapt(spec(epochs=1, seed=8), small, tiny_model_dir).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_head_only_leaves_every_encoder_weight_bit_identical(task, tiny_model_dir):
    pretrained = load_file(str(tiny_model_dir / "model.safetensors"))
    job = expand(
        {
            "recipe": "feature_extraction",
            "base_model": "tiny-bert",
            "data": {"train": "ds"},
            "training": {"epochs": 2},
        }
    )
    result = adapt(job, task, tiny_model_dir)
    encoder = result.model.encoder.state_dict()
    compared = [k for k in pretrained if k in encoder]
    assert len(compared) >= 30
    assert all(torch.equal(pretrained[k], encoder[k]) for k in compared)
    new = sum(p.numel() for p in [*result.model.head.parameters(), *result.model.pooling.parameters()])
    assert new == (32 * 2 + 2) + (3 + 1)  # linear head + scalar mix of 3 layers (and its scale, gamma)
    # The recipe's full-batch fit keeps gamma fixed: the head's weights absorb any scale (features.py).
    assert result.trainable_params == new - 1 and result.model.pooling.gamma.item() == 1.0
    assert result.total_params > 100 * new
    assert result.metrics["features_cached"] is True


def test_fine_tuning_counts_every_weight_as_trainable(trained):
    assert trained.trainable_params == trained.total_params


def test_artifact_reloads_to_identical_predictions(trained, task, tmp_path: Path):
    from app.schemas.spec import ModelConfig

    size = save_classifier(trained.model, trained.tokenizer, trained.labels, ModelConfig(), 64, tmp_path)
    assert size == sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))  # nothing pickled
    loaded = load_classifier(tmp_path)
    before = predict_proba(trained.model, trained.tokenizer, task.test.texts, 64)
    after = predict_proba(loaded.model, loaded.tokenizer, task.test.texts, loaded.max_length)
    assert torch.equal(before, after)
    assert loaded.labels == trained.labels


def test_one_class_is_refused_with_the_class_named(tiny_model_dir):
    data = TaskData(LabeledTexts(["a", "b", "c"], ["x", "x", "x"]))
    with pytest.raises(InvalidTaskData, match="only one class \\('x'\\)"):
        adapt(spec(), data, tiny_model_dir)


def test_validation_labels_unseen_in_train_are_refused(task, tiny_model_dir):
    odd = LabeledTexts(["a", "b"], ["positive", "neutral"])
    with pytest.raises(InvalidTaskData, match="validation has labels that train does not: 'neutral'"):
        adapt(spec(), TaskData(task.train, odd), tiny_model_dir)


def test_without_validation_a_stratified_share_is_held_out(task, tiny_model_dir):
    result = adapt(spec(epochs=1), TaskData(task.train), tiny_model_dir)
    assert result.metrics["validation_held_out_from_train"] is True
    assert result.metrics["examples"] == 30  # 10% of 300


def test_validation_fraction_zero_trains_every_row_and_keeps_the_last_epoch(task, tiny_model_dir):
    no_validation = spec(epochs=3)
    no_validation.data.validation_fraction = 0
    recorder = Recorder()
    result = adapt(no_validation, TaskData(task.train, None, task.test), tiny_model_dir, recorder, progress_interval=60)
    assert recorder.started == {"train_examples": 300, "validation_examples": 0}  # every row trains
    assert result.metrics["validation_held_out_from_train"] is False
    assert result.metrics["history"] == [] and "accuracy" not in result.metrics  # nothing was validated
    assert result.metrics["best_epoch"] == 3 and "evaluated" not in recorder.events
    assert result.metrics["test"]["accuracy"] >= 0.9


class Recorder(SilentCallbacks):
    def __init__(self, stop_after: int | None = None, epochs: int = 3) -> None:
        self.steps: list[int] = []
        self.events: list[str] = []
        self.stop_after, self.epochs = stop_after, epochs

    def on_progress(self, progress):
        self.steps.append(progress.step)
        assert progress.total_steps == self.epochs * 19 and 0 < progress.fraction <= 1

    def on_event(self, kind, message, data):
        self.events.append(kind)
        if kind == "training_started":
            self.started = {k: data[k] for k in ("train_examples", "validation_examples")}

    def should_stop(self):
        return self.stop_after is not None and len(self.steps) >= self.stop_after


def test_progress_is_reported_and_increases(task, tiny_model_dir):
    recorder = Recorder()
    adapt(spec(), task, tiny_model_dir, recorder, progress_interval=0.0)
    assert recorder.steps == list(range(1, 3 * 19 + 1))  # interval 0: every step
    assert recorder.events == ["training_started", "phase", "evaluated", "evaluated", "evaluated"]


def test_every_epochs_last_step_is_reported_however_long_the_interval(task, tiny_model_dir):
    # A short job finishes inside one progress interval; its last report must still be its end, or
    # a watcher is left reading "epoch 2/3" for a finished job.
    recorder = EpochRecorder()
    adapt(spec(), task, tiny_model_dir, recorder, progress_interval=60)
    assert recorder.reports == [(1, 19), (2, 38), (3, 57)]


class EpochRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.reports: list[tuple[int, int]] = []

    def on_progress(self, progress):
        super().on_progress(progress)
        self.reports.append((progress.epoch, progress.step))


def test_should_stop_cancels_between_steps(task, tiny_model_dir):
    recorder = Recorder(stop_after=5)
    with pytest.raises(Cancelled, match="stopped at step 5 of 57"):
        adapt(spec(), task, tiny_model_dir, recorder, progress_interval=0.0)


def test_early_stopping_stops_after_patience(task, tiny_model_dir):
    recorder = Recorder(epochs=10)
    result = adapt(
        spec(learning_rate=0.5, epochs=10, early_stopping_patience=1, seed=2),
        task,
        tiny_model_dir,
        recorder,
        progress_interval=60,
    )
    history = result.metrics["history"]
    assert result.metrics["stopped_early"] is True
    assert len(history) == result.metrics["best_epoch"] + 1 < 10
    assert "early_stopped" in recorder.events

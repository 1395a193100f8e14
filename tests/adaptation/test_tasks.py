"""Task types: multi-label metrics and threshold, a multi-label model end to end, sentence pairs."""

from pathlib import Path

import pytest
import torch

from app.adaptation import TaskData, adapt, load_classifier, save_classifier
from app.adaptation.data import token_batches
from app.adaptation.tasks import TASKS
from app.serving.predictor import predict
from tests.adaptation.helpers import job
from tests.adaptation.test_groups_and_unfreezing import _tokenizer
from tests.utils.data import paired, tagged


def test_multi_label_metrics_on_a_known_case():
    task = TASKS.get("multi_label")(["a", "b", "c"], 0.5)
    gold = [("a",), ("a", "b"), ("c",), ("b",)]
    probabilities = torch.tensor([[0.9, 0.1, 0.1], [0.8, 0.2, 0.7], [0.1, 0.1, 0.9], [0.1, 0.6, 0.1]])
    report = task.report(gold, probabilities)
    # predicted: {a}, {a, c}, {c}, {b}: tp a=2 b=1 c=1, fp c=1, fn b=1
    assert report["accuracy"] == 0.75  # three of four label sets exactly right
    assert report["micro_f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["per_class"]["c"]["precision"] == 0.5
    assert report["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 2 / 3) / 3)


def test_the_threshold_is_tuned_on_validation_unless_configured():
    gold = [("a",), ("b",), ("a", "b")]
    probabilities = torch.tensor([[0.4, 0.1], [0.1, 0.35], [0.3, 0.3]])  # everything right only below 0.3
    tuned = TASKS.get("multi_label")(["a", "b"], None)
    tuned.fit_threshold(gold, probabilities)
    assert tuned.threshold < 0.3 and tuned.report(gold, probabilities)["micro_f1"] == 1.0
    fixed = TASKS.get("multi_label")(["a", "b"], 0.5)
    fixed.fit_threshold(gold, probabilities)
    assert fixed.threshold == 0.5 and fixed.report(gold, probabilities)["micro_f1"] == 0.0


def test_a_multi_label_model_learns_and_serves_label_sets(tiny_model_dir, tmp_path: Path):
    spec = job(task="multi_label", training={"epochs": 6, "learning_rate": 3e-3, "eval_metric": "micro_f1"})
    result = adapt(spec, TaskData(tagged(300, seed=1), tagged(80, seed=2), tagged(80, seed=3)), tiny_model_dir)
    assert result.labels == ["funny", "sad"]
    assert result.metrics["micro_f1"] >= 0.85 and result.metrics["test"]["micro_f1"] >= 0.85
    assert 0 < result.threshold < 1 and result.metrics["threshold"] == result.threshold
    save_classifier(
        result.model,
        result.tokenizer,
        result.labels,
        spec.model,
        64,
        tmp_path,
        task="multi_label",
        threshold=result.threshold,
    )
    loaded = load_classifier(tmp_path)
    assert loaded.multi_label and loaded.threshold == result.threshold
    [prediction] = predict(loaded, ["a hilarious and tragic story"])
    assert set(prediction["labels"]) <= {"funny", "sad"}
    assert prediction["labels"] == [k for k, p in prediction["scores"].items() if p > result.threshold]


def test_pairs_are_the_base_models_pair_input_with_segment_ids(tiny_model_dir):
    tokenizer = _tokenizer(tiny_model_dir)
    batch = next(token_batches(tokenizer, [("one two", "three")], 64, None, 8).by_length())
    ids = batch.input_ids[0].tolist()
    assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 2
    assert batch.token_type_ids[0].tolist() == [0, 0, 0, 0, 1, 1]  # [CLS] one two [SEP] | three [SEP]


def test_a_pair_model_trains_and_predicts_on_pairs(tiny_model_dir, tmp_path: Path):
    spec = job(text_fields=["a", "b"], training={"epochs": 3})
    result = adapt(spec, TaskData(paired(300, seed=1), paired(100, seed=2)), tiny_model_dir)
    assert result.labels == ["negative", "positive"]
    assert result.metrics["accuracy"] >= 0.9
    save_classifier(result.model, result.tokenizer, result.labels, spec.model, 64, tmp_path)
    [prediction] = predict(load_classifier(tmp_path), [("the plot was awful", "the movie was long")])
    assert prediction["label"] == "negative" and "labels" not in prediction

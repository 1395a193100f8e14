"""Frozen features computed once and shared: the refit after the choosing run, another seed's split of
the same rows and another job reading the same folder reuse them, and what they read is exactly what
a computation gives; other weights, another pooling or other rows are another key."""

from __future__ import annotations

import pytest
import torch

from app.adaptation import TaskData, adapt
from app.adaptation.callbacks import SilentCallbacks
from app.adaptation.data import token_batches
from app.adaptation.features import FEATURES, shared_features
from app.adaptation.resources import Resources
from tests.adaptation.helpers import classifier, job
from tests.adaptation.test_groups_and_unfreezing import _tokenizer
from tests.utils.data import sentiment


class Events(SilentCallbacks):
    def __init__(self) -> None:
        self.reads: list[bool] = []

    def on_event(self, kind, message, data=None):
        if kind == "features_cached":
            self.reads.append(data["read"])


@pytest.fixture(autouse=True)
def empty_memory():
    FEATURES.memory.clear()
    yield
    FEATURES.memory.clear()


def head_only(**training):
    return job(recipe="feature_extraction", training={"epochs": 2, **training})


def test_the_refit_and_another_seed_read_the_features_the_choosing_run_computed(tiny_model_dir):
    data = TaskData(sentiment(60, seed=1))
    events = Events()
    adapt(head_only(seed=0), data, tiny_model_dir, events)  # choosing run, then the refit on every row
    adapt(head_only(seed=1), data, tiny_model_dir, events)  # another seed: another split of the same rows
    assert events.reads == [False, True, True, True]


def test_a_job_in_another_process_reads_the_folder_and_gets_the_same_model(tiny_model_dir, tmp_path):
    data, folder = TaskData(sentiment(60, seed=1), sentiment(20, seed=2)), tmp_path / "features"
    cold = adapt(head_only(), data, tiny_model_dir, resources=Resources(feature_cache=folder))
    assert len(list(folder.glob("*.safetensors"))) == 1
    FEATURES.memory.clear()  # as a new worker process starts
    events = Events()
    warm = adapt(head_only(), data, tiny_model_dir, events, resources=Resources(feature_cache=folder))
    assert events.reads == [True]
    for name, parameter in cold.model.head.state_dict().items():
        assert torch.equal(parameter, warm.model.head.state_dict()[name]), name


def features(model, tokenizer, texts):
    batches = token_batches(tokenizer, texts, 64, None, 16)
    (out,), read = shared_features(model, [batches], None, None)
    return out, read


def test_a_read_is_bit_identical_to_a_computation_and_other_inputs_are_other_keys(tiny_model_dir):
    tokenizer = _tokenizer(tiny_model_dir)
    texts = sentiment(24, seed=3).texts
    model = classifier(tiny_model_dir, head_only())
    model.freeze_encoder()
    computed, read = features(model, tokenizer, texts)
    again, read_again = features(model, tokenizer, texts)
    assert (read, read_again) == (False, True) and torch.equal(computed, again)
    FEATURES.memory.clear()
    assert torch.equal(features(model, tokenizer, texts)[0], computed)  # computed anew: the same bits

    assert features(model, tokenizer, texts[:-1])[1] is False  # other rows
    assert features(model, tokenizer, list(reversed(texts)))[0].equal(computed.flip(0))  # same rows, any order: read
    other_pooling = classifier(tiny_model_dir, job(model={"pooling": "mean"}))
    other_pooling.freeze_encoder()
    assert features(other_pooling, tokenizer, texts)[1] is False
    with torch.no_grad():
        model.encoder.get_input_embeddings().weight[5] += 1.0  # other weights (a stage trained the encoder)
    assert features(model, tokenizer, texts)[1] is False


def test_the_memory_keeps_the_newest_features_within_its_budget():
    from app.adaptation.features import FeatureStore

    store = FeatureStore(memory_bytes=3 * 400)  # three of the 100-float tensors below
    for key in "abcd":
        store.put(key, torch.zeros(100), None)
    assert list(store.memory) == ["b", "c", "d"]
    store.put("huge", torch.zeros(1000), None)
    assert list(store.memory) == ["b", "c", "d"] and store.get("huge", None) is None

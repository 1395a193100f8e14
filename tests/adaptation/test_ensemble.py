"""Ensembles: members trained as one job on one split; the ensemble's probabilities are the mean of
its members'; the card lists each member's metrics; a resumed job trains only unfinished members."""

import json

import pytest
import torch

from app.adaptation import Checkpoints, TaskData, adapt, load_classifier
from app.adaptation.ensemble import LoadedEnsemble, load_model
from app.adaptation.job import save_result
from app.schemas.recipes import expand
from tests.utils.data import sentiment

MEMBERS = [{}, {"recipe": "adapters"}, {"training": {"seed": 3}}]


def ensemble_spec(members=None):
    return expand(
        {
            "base_model": "tiny-bert",
            "data": {"train": "ds"},
            "training": {"epochs": 2, "learning_rate": 1e-3, "batch_size": 16},
            "ensemble": {"members": members or MEMBERS},
        }
    )


@pytest.fixture(scope="module")
def data():
    return TaskData(sentiment(160), None, sentiment(60, seed=3))


@pytest.fixture(scope="module")
def trained(data, tiny_model_dir):
    return adapt(ensemble_spec(), data, tiny_model_dir)


def test_members_differ_as_specified(trained):
    specs = [member for member, _ in trained.members]
    assert [s.recipe for s in specs] == ["fine_tuning", "adapters", "fine_tuning"]
    assert [s.training.seed for s in specs] == [0, 0, 3]
    assert specs[1].optimization.train == "adapters" and specs[1].training.epochs == 2  # the job's override kept
    assert [m["member"] for m in trained.metrics["members"]] == [1, 2, 3]


def test_probabilities_are_the_mean_of_the_members(trained, data, tiny_model_dir, tmp_path):
    spec = ensemble_spec()
    save_result(trained, spec, tmp_path)
    card = json.loads((tmp_path / "thaw.json").read_text())
    assert card["kind"] == "ensemble" and [m["path"] for m in card["members"]] == [
        "members/0",
        "members/1",
        "members/2",
    ]
    assert card["members"][1]["metrics"]["recipe"] == "adapters"
    loaded = load_model(tmp_path, lambda base: tiny_model_dir)
    assert isinstance(loaded, LoadedEnsemble)
    texts = data.test.texts
    each = [load_classifier(tmp_path / m["path"], tiny_model_dir).probabilities(texts) for m in card["members"]]
    mean = torch.stack(each).mean(0)
    torch.testing.assert_close(loaded.probabilities(texts), mean, atol=1e-6, rtol=0)
    assert not torch.allclose(each[0], each[2])  # the members really differ
    # The ensemble's own test metrics are those of the mean.
    predicted = [loaded.labels[i] for i in mean.argmax(-1).tolist()]
    accuracy = sum(p == g for p, g in zip(predicted, data.test.labels, strict=True)) / len(texts)
    assert trained.metrics["test"]["accuracy"] == pytest.approx(accuracy)


def test_trainable_parameters_add_up_over_members(trained):
    # Every member was evaluated on the same held-out rows: their sizes agree with the job's split.
    assert trained.metrics["validation_held_out_from_train"] is True
    assert all("accuracy" in m for m in trained.metrics["members"])
    assert trained.trainable_params == sum(r.trainable_params for _, r in trained.members)


def test_a_resumed_ensemble_trains_only_the_unfinished_members(data, tiny_model_dir, tmp_path):
    spec = ensemble_spec([{}, {"training": {"seed": 3}}])
    checkpoints = Checkpoints(tmp_path / "ck", 1000)
    first = adapt(spec, data, tiny_model_dir, checkpoints=checkpoints)
    assert (tmp_path / "ck" / "finished" / "member-0" / "result.json").exists()
    events = []

    class Record:
        def on_progress(self, progress):
            pass

        def on_event(self, kind, message, data):
            events.append(kind)

        def should_stop(self):
            return False

        def should_pause(self):
            return False

    again = adapt(spec, data, tiny_model_dir, Record(), checkpoints=checkpoints)
    assert "training_started" not in events  # both members were finished: nothing trained again
    for (_, a), (_, b) in zip(first.members, again.members, strict=True):
        assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    assert again.metrics["test"] == first.metrics["test"]

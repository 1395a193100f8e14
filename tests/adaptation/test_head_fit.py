"""The full-batch head fit over cached features (optimization.head_fit "lbfgs", the feature_extraction
recipe's): one L-BFGS step of every example per epoch; on a task the frozen features nearly separate
it reaches 0.9 accuracy, where minibatch AdamW at the old recipe's rate stays 0.2 lower after as many epochs."""

from __future__ import annotations

import pytest
import torch

from app.adaptation import TaskData, adapt
from tests.adaptation.helpers import job
from tests.utils.data import sentiment

DATA = TaskData(sentiment(200, seed=1), sentiment(100, seed=2), sentiment(100, seed=3))


def feature_extraction(head_fit: str, seed: int = 0):
    rate = 1.0 if head_fit == "lbfgs" else 2e-3  # the recipe's rate for each fit
    return job(
        recipe="feature_extraction",
        optimization={"head_fit": head_fit},
        training={"learning_rate": rate, "epochs": 20, "seed": seed},
    )


@pytest.fixture(scope="module")
def fitted(tiny_model_dir):
    return {fit: adapt(feature_extraction(fit), DATA, tiny_model_dir) for fit in ("lbfgs", "minibatch")}


def test_the_full_batch_fit_separates_what_the_features_separate(fitted):
    lbfgs, minibatch = fitted["lbfgs"], fitted["minibatch"]
    assert lbfgs.metrics["features_cached"] is True
    assert [h["step"] for h in lbfgs.metrics["history"]] == list(range(1, 21)), "one full-batch step an epoch"
    assert lbfgs.metrics["accuracy"] >= 0.9 and lbfgs.metrics["test"]["accuracy"] >= 0.9
    assert minibatch.metrics["history"][-1]["step"] == 20 * 13  # 200 rows in batches of 16
    assert minibatch.metrics["accuracy"] < lbfgs.metrics["accuracy"] - 0.2


def test_the_fit_is_deterministic(fitted, tiny_model_dir):
    again = adapt(feature_extraction("lbfgs"), DATA, tiny_model_dir)
    for name, tensor in fitted["lbfgs"].model.head.state_dict().items():
        assert torch.equal(tensor, again.model.head.state_dict()[name]), name


def test_the_recipe_fits_its_head_by_lbfgs_and_an_explicit_minibatch_means_what_it_meant():
    from app.schemas.recipes import expand

    recipe = expand({"recipe": "feature_extraction", "data": {"train": "d"}})
    assert (recipe.optimization.head_fit, recipe.training.learning_rate) == ("lbfgs", 1.0)
    plain = expand({"data": {"train": "d"}, "optimization": {"train": "head_only"}})
    assert plain.optimization.head_fit == "minibatch"

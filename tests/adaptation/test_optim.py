"""Discriminative learning rates: group l gets lr / decay^(distance from the top) (ULMFiT eq. 2)."""

import pytest

from app.adaptation.groups import layer_groups
from app.adaptation.optim import build_optimizer
from tests.adaptation.helpers import classifier, job


def test_each_group_gets_lr_over_decay_to_its_depth(tiny_model_dir):
    spec = job(optimization={"discriminative_decay": 2.6}, training={"learning_rate": 0.01})
    model = classifier(tiny_model_dir, spec)
    optimizer = build_optimizer(model, layer_groups(model, 2), spec)
    expected = {"new": 0.01, "layer_2": 0.01 / 2.6, "layer_1": 0.01 / 2.6**2, "embeddings": 0.01 / 2.6**3}
    names = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(expected[group["group"]], rel=1e-12)
        seen.update(names[id(p)] for p in group["params"])
    assert seen == set(names.values())  # every parameter is in exactly the group of its layer


def test_without_decay_every_group_has_the_same_rate(tiny_model_dir):
    spec = job(training={"learning_rate": 0.003})
    model = classifier(tiny_model_dir, spec)
    optimizer = build_optimizer(model, layer_groups(model, 2), spec)
    assert {g["lr"] for g in optimizer.param_groups} == {0.003}


def test_biases_and_layer_norms_get_no_weight_decay(tiny_model_dir):
    spec = job(optimization={"weight_decay": 0.05})
    model = classifier(tiny_model_dir, spec)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in build_optimizer(model, layer_groups(model, 2), spec).param_groups:
        for p in group["params"]:
            plain = p.ndim < 2 or "LayerNorm" in names[id(p)]
            assert group["weight_decay"] == (0.0 if plain else 0.05)


def test_schedule_multiplies_every_groups_own_rate(tiny_model_dir, tmp_path):
    from app.adaptation import SilentCallbacks, TaskData, adapt
    from tests.utils.data import sentiment

    events = []

    class Watch(SilentCallbacks):
        def on_event(self, kind, message, data):
            events.append((kind, data))

    spec = job(
        optimization={"discriminative_decay": 2.0, "unfreezing": "gradual", "lr_schedule": "slanted_triangular"},
        training={"epochs": 2, "learning_rate": 0.008},
    )
    adapt(spec, TaskData(sentiment(64), sentiment(16, seed=5)), tiny_model_dir, Watch())
    phases = [d for kind, d in events if kind == "phase"]
    assert phases[0]["learning_rates"] == {"new": 0.008}
    assert phases[1]["learning_rates"] == {"layer_2": 0.004, "new": 0.008}

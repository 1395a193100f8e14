"""Layer groups, and the trainable set in every phase of every unfreezing schedule."""

import pytest
import torch

from app.adaptation import SilentCallbacks
from app.adaptation.classification import classification_trainer
from app.adaptation.groups import layer_groups
from app.adaptation.strategies import STRATEGIES
from app.adaptation.unfreezing import UNFREEZING, Position
from app.adaptation.unfreezing.chain_thaw import ChainThaw
from app.adaptation.unfreezing.gradual import Gradual
from app.adaptation.unfreezing.none import NoUnfreezing
from app.adaptation.unfreezing.sequential import Sequential
from app.adaptation.unfreezing.top_only import TopOnly
from tests.adaptation.helpers import classifier, job
from tests.utils.data import sentiment

E, L1, L2, T = "embeddings", "layer_1", "layer_2", "new"


def single(labels):
    from app.adaptation.tasks import TASKS

    return TASKS.get("single_label")(labels, None)


def test_groups_are_bottom_up_and_cover_every_parameter_once(tiny_model_dir):
    model = classifier(tiny_model_dir, job())
    groups = layer_groups(model, 2)
    assert [g.name for g in groups] == [E, L1, L2, T]
    assert [g.depth_from_top for g in groups] == [3, 2, 1, 0]
    names = [n for g in groups for n in g.parameter_names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert all(n.startswith("encoder.encoder.layer.0.") for n in groups[1].parameter_names)
    assert set(groups[3].parameter_names) == {"head.1.weight", "head.1.bias"}


def test_adapter_and_lora_weights_belong_to_their_layer(tiny_model_dir):
    model = classifier(tiny_model_dir, job(model={"adapters": {"size": 4}, "lora": {"target_modules": ["query"]}}))
    groups = {g.name: g.parameter_names for g in layer_groups(model, 2)}
    assert any(".adapter." in n for n in groups[L2]) and any(".lora_" in n for n in groups[L1])
    assert not any(".adapter." in n or ".lora_" in n for n in groups[T] + groups[E])


def at(epoch: int, step: int = 0, steps_per_epoch: int = 10, epochs: int = 5) -> Position:
    return Position(epoch, step, steps_per_epoch, steps_per_epoch * epochs)


def test_top_only():
    assert UNFREEZING.get("top_only")(at(1), 2, TopOnly()) == {T, L2}
    assert UNFREEZING.get("top_only")(at(5, 49), 2, TopOnly()) == {T, L2}


def test_none_trains_everything():
    assert UNFREEZING.get("none")(at(1), 2, NoUnfreezing()) == {E, L1, L2, T}


def test_gradual_unfreezes_one_group_per_epoch_from_the_top():
    schedule = UNFREEZING.get("gradual")
    phases = [schedule(at(epoch, (epoch - 1) * 10), 2, Gradual()) for epoch in range(1, 6)]
    assert phases == [{T}, {T, L2}, {T, L2, L1}, {T, L2, L1, E}, {T, L2, L1, E}]


def test_gradual_every_k_steps():
    schedule = UNFREEZING.get("gradual")
    options = Gradual(every_steps=3)
    assert [schedule(at(1, s), 2, options) for s in (0, 2, 3, 5, 6, 9)] == [
        {T},
        {T},
        {T, L2},
        {T, L2},
        {T, L2, L1},
        {T, L2, L1, E},
    ]


def test_gradual_over_a_fraction_of_the_run_thaws_every_group_by_then():
    schedule = UNFREEZING.get("gradual")
    options = Gradual(thaw_fraction=0.6)  # 50 steps: 3 more groups over the first 30, one every 10
    steps = (0, 9, 10, 19, 20, 29, 30, 49)
    assert [schedule(at(1 + s // 10, s), 2, options) for s in steps] == [
        {T},
        {T},
        {T, L2},
        {T, L2},
        {T, L2, L1},
        {T, L2, L1},
        {T, L2, L1, E},
        {T, L2, L1, E},
    ]


def test_gradual_takes_one_pace_only():
    with pytest.raises(ValueError, match="every_steps or thaw_fraction, not both"):
        Gradual(every_steps=3, thaw_fraction=0.5)


def test_chain_thaw_new_layers_then_each_group_alone_bottom_up_then_all():
    # Felbo et al. 2017: new layers, embeddings, each layer bottom-up, then everything; the whole
    # model gets final_share of the steps (half by default), the four one-group phases the rest.
    schedule = UNFREEZING.get("chain_thaw")
    total = 48
    phases = [schedule(Position(1, s, total, total), 2, ChainThaw()) for s in range(total)]
    assert phases[:24:6] == [{T}, {E}, {L1}, {L2}]
    assert all(phases[i] == phases[i - i % 6] for i in range(24))
    assert phases[24:] == [{E, L1, L2, T}] * 24


def test_chain_thaw_final_share_sets_the_whole_models_steps():
    schedule = UNFREEZING.get("chain_thaw")
    phases = [schedule(Position(1, s, 100, 100), 2, ChainThaw(final_share=0.2)) for s in range(100)]
    assert sum(p == {E, L1, L2, T} for p in phases) == 20
    assert [sum(p == {g} for p in phases) for g in (T, E, L1, L2)] == [20, 20, 20, 20]


def test_sequential_new_then_all_but_embeddings_then_all():
    schedule = UNFREEZING.get("sequential")
    options = Sequential(new_epochs=2, body_epochs=1)
    assert [schedule(at(e), 2, options) for e in (1, 2, 3, 4, 5)] == [
        {T},
        {T},
        {L1, L2, T},
        {E, L1, L2, T},
        {E, L1, L2, T},
    ]


class StepWatcher(SilentCallbacks):
    """Callbacks called every step: records which groups' weights changed in each step."""

    def __init__(self, model, groups):
        self.model, self.groups, self.changes, self.events = model, groups, [], []
        self.last = self.snapshot()

    def snapshot(self):
        return {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def on_progress(self, progress):
        now = self.snapshot()
        changed = {g.name for g in self.groups for n in g.parameter_names if not torch.equal(now[n], self.last[n])}
        self.changes.append(changed)
        self.last = now

    def on_event(self, kind, message, data):
        self.events.append((kind, data))


@pytest.mark.parametrize(
    ("unfreezing", "epochs", "expected"),
    [
        ("top_only", 2, [{T, L2}] * 2),
        ("gradual", 4, [{T}, {T, L2}, {T, L2, L1}, {T, L2, L1, E}]),
        ({"name": "chain_thaw", "final_share": 0.2}, 5, [{T}, {E}, {L1}, {L2}, {E, L1, L2, T}]),
        ({"name": "sequential", "new_epochs": 1, "body_epochs": 1}, 3, [{T}, {L1, L2, T}, {E, L1, L2, T}]),
    ],
)
def test_training_changes_exactly_the_scheduled_groups(tiny_model_dir, unfreezing, epochs, expected):
    spec = job(optimization={"unfreezing": unfreezing, "lr_schedule": "constant"}, training={"epochs": epochs})
    model = classifier(tiny_model_dir, spec)
    STRATEGIES.get("all")(model)
    data = sentiment(64, seed=3)  # 4 steps per epoch of 16
    trainer = classification_trainer(model, _tokenizer(tiny_model_dir), single(["negative", "positive"]), spec, None, 0)
    watcher = StepWatcher(model, trainer.groups)
    trainer.callbacks = watcher
    trainer.fit(data, sentiment(16, seed=4))
    per_epoch = [watcher.changes[i * 4 : (i + 1) * 4] for i in range(epochs)]
    for changes, groups in zip(per_epoch, expected, strict=True):
        assert all(c == groups for c in changes), (changes, groups)  # every scheduled group moves, no other
    phases = [d for kind, d in watcher.events if kind == "phase"]
    assert [set(p["trainable_groups"]) for p in phases] == expected[: len(phases)]
    assert [p["epoch"] for p in phases] == [e + 1 for e in range(len(phases))]


def test_the_best_epoch_restores_groups_trained_only_before_it(tiny_model_dir):
    # chain_thaw with a learning rate that wrecks the last phase: the kept model must bring back the
    # head as it was at the best epoch, though the head was frozen in the phases in between.
    spec = job(
        optimization={"unfreezing": "chain_thaw", "lr_schedule": "constant"},
        training={"epochs": 5, "learning_rate": 0.3, "seed": 1},
    )
    model = classifier(tiny_model_dir, spec)
    STRATEGIES.get("all")(model)
    task = single(["negative", "positive"])
    trainer = classification_trainer(model, _tokenizer(tiny_model_dir), task, spec, SilentCallbacks(), 60)
    validation = sentiment(40, seed=4)
    outcome = trainer.fit(sentiment(64, seed=3), validation)
    again = trainer.evaluate(validation.labels)
    assert again["accuracy"] == outcome.best_metrics["accuracy"]


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_trainable_params_count_what_the_schedule_thawed(tiny_model_dir):
    from app.adaptation import TaskData, adapt

    spec = job(optimization={"unfreezing": "top_only"}, training={"epochs": 1})
    model = classifier(tiny_model_dir, spec)
    thawed = sum(
        p.numel()
        for g in layer_groups(model, 2)
        if g.name in {T, L2}
        for n, p in model.named_parameters()
        if n in g.parameter_names
    )
    result = adapt(spec, TaskData(sentiment(32), sentiment(8, seed=1)), tiny_model_dir)
    assert result.trainable_params == thawed < result.total_params

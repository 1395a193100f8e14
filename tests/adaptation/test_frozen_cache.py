"""The frozen bottom of unfreezing schedules: its output, cached once per example, gives the logits
the plain forward pass gives; only the scheduled groups train; and it is skipped, with an event,
where it would not be exact or does not fit its budget."""

import random

import pytest
import torch
from transformers import AutoTokenizer

from app.adaptation import SilentCallbacks, TaskData, adapt
from app.adaptation.classification import classification_trainer
from app.adaptation.data import token_batches
from app.adaptation.frozen_cache import EVENT, frozen_bottom
from app.adaptation.groups import layer_groups
from app.adaptation.strategies import STRATEGIES
from app.adaptation.tasks import TASKS
from tests.adaptation.helpers import classifier, job
from tests.adaptation.test_checkpoint import Interrupt, assert_same_model, run
from tests.adaptation.test_checkpoint import spec as checkpoint_spec
from tests.utils.data import paired, sentiment

E, L1, L2, T = "embeddings", "layer_1", "layer_2", "new"
LABELS = ["negative", "positive"]
TRAIN, VALIDATION = sentiment(64, seed=3), sentiment(16, seed=4)  # 4 steps of 16 per epoch


class Events(SilentCallbacks):
    def __init__(self):
        self.events = []

    def on_event(self, kind, message, data):
        self.events.append((kind, message, data))

    def cache(self):
        return [(message, data) for kind, message, data in self.events if kind == EVENT]


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def freeze_below(model, trainable):
    for group in layer_groups(model, model.num_layers):
        for name, parameter in model.named_parameters():
            if name in group.parameter_names:
                parameter.requires_grad_(group.name in trainable)


class RowCounter:
    """Counts the rows (examples) that encoder layer 0 computes."""

    def __init__(self, model):
        self.rows = 0
        model.encoder.encoder.layer[0].register_forward_hook(self)

    def __call__(self, module, args, output):
        self.rows += args[0].shape[0]


def train(tiny_model_dir, unfreezing, epochs=2, training=None, model=None, **optimization):
    spec = job(
        model=model or {},
        optimization={"unfreezing": unfreezing, "lr_schedule": "constant", **optimization},
        training={"epochs": epochs, **(training or {})},
    )
    torch.manual_seed(0)  # the same head, and the same dropout, in every run
    net = classifier(tiny_model_dir, spec)
    STRATEGIES.get("all")(net)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    counter, callbacks = RowCounter(net), Events()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = classification_trainer(net, tokenizer, TASKS.get("single_label")(LABELS, None), spec, callbacks, 60)
    trainer.fit(TRAIN, None)  # no validation: the last epoch is kept, and layer 0 runs only to train
    return net, before, counter.rows, callbacks


def changed_groups(net, before):
    now = dict(net.named_parameters())
    return {g.name for g in layer_groups(net, 2) if any(not torch.equal(now[n], before[n]) for n in g.parameter_names)}


@pytest.mark.parametrize(
    ("texts", "trainable"),
    [(sentiment(40, seed=5), {L2, T}), (sentiment(40, seed=5), {T}), (paired(40, seed=5), {L2, T})],
    ids=["layer_1-frozen", "every-layer-frozen", "sentence-pairs"],
)
def test_logits_through_the_cache_equal_the_plain_forward(tiny_model_dir, texts, trainable):
    spec = job(optimization={"unfreezing": "top_only"})
    model = classifier(tiny_model_dir, spec)
    no_dropout(model)  # train mode without randomness, so both passes must agree
    freeze_below(model, trainable)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batches = token_batches(tokenizer, texts.texts, 64, [0] * len(texts), 16)
    events = Events()
    frozen = frozen_bottom(model, spec, [], batches, torch.float32, events)
    model.train()
    below = 2 if L2 in trainable else 3  # groups under the lowest trainable one
    frozen.move(below, stretch_steps=10, steps_per_epoch=3)
    assert frozen.caching and [d["cached"] for _, d in events.cache()] == [True]
    counter = RowCounter(model)
    for batch in batches.training_order(random.Random(0)):  # other batches than the cache was built in
        cached = model.head(frozen.pooled(batch))
        assert counter.rows == 0  # the frozen layers did not run: the cache stood in for them
        types = None if batch.token_type_ids is None else batch.token_type_ids
        plain = model(batch.input_ids, batch.attention_mask, types)
        torch.testing.assert_close(cached, plain, atol=2e-3, rtol=2e-3)  # fp16 storage of layer outputs
        counter.rows = 0
    # Backward stops at the lowest trainable group: no frozen weight gets a gradient.
    model.head(frozen.pooled(batch)).sum().backward()
    got_grad = {
        g.name
        for g in layer_groups(model, 2)
        for n, p in model.named_parameters()
        if n in g.parameter_names and p.grad is not None
    }
    assert got_grad == trainable


def test_a_cached_run_trains_only_the_scheduled_groups_and_rebuilds_at_each_boundary(tiny_model_dir):
    # Gradual unfreezing every 8 steps (2 epochs): new alone, then layer_2 too, then layer_1 too.
    net, before, _, events = train(tiny_model_dir, {"name": "gradual", "every_steps": 8}, epochs=5)
    built = [d["frozen_layers"] for _, d in events.cache() if d["cached"]]
    assert built == [[L1, L2], [L1]]  # every layer's output while only `new` trains, then layer_1's
    assert changed_groups(net, before) == {L1, L2, T}
    frozen_names = [n for g in layer_groups(net, 2) if g.name == E for n in g.parameter_names]
    assert all(torch.equal(dict(net.named_parameters())[n], before[n]) for n in frozen_names)


def test_top_only_keeps_the_bottom_bit_identical_and_trains_the_top(tiny_model_dir):
    net, before, _, events = train(tiny_model_dir, "top_only", epochs=2)
    assert [d["cached"] for _, d in events.cache()] == [True]
    assert changed_groups(net, before) == {L2, T}


def test_the_frozen_layers_run_once_per_example_not_once_per_step(tiny_model_dir):
    _, _, cached_rows, _ = train(tiny_model_dir, "top_only", epochs=2)
    _, _, plain_rows, _ = train(tiny_model_dir, "top_only", epochs=2, training={"cache_frozen_layers": False})
    assert cached_rows == len(TRAIN)
    assert plain_rows == 2 * len(TRAIN)


def test_a_stretch_shorter_than_an_epoch_is_not_cached(tiny_model_dir):
    # chain_thaw over 2 epochs of 4 steps: 5 phases of under 2 steps each, no example seen twice.
    _, _, rows, events = train(tiny_model_dir, "chain_thaw", epochs=2)
    skipped = [(m, d) for m, d in events.cache() if not d["cached"]]
    assert skipped and not [d for _, d in events.cache() if d["cached"]]
    assert all("no more than an epoch" in m for m, _ in skipped)
    assert rows == 2 * len(TRAIN)


def test_over_budget_falls_back_with_an_event_and_trains_the_same(tiny_model_dir):
    fp32 = {"precision": "fp32"}  # bf16 rounding would blur the comparison below
    cached, before, _, _ = train(tiny_model_dir, "top_only", training=fp32)
    fallback, _, rows, events = train(tiny_model_dir, "top_only", training={**fp32, "frozen_cache_mb": 0})
    dropout, _, _, _ = train(tiny_model_dir, "top_only", training={**fp32, "cache_frozen_layers": False})
    (message, data), *rest = events.cache()
    assert not rest and not data["cached"] and "over frozen_cache_mb (0)" in message
    assert rows == 2 * len(TRAIN)  # the frozen layers ran at every step
    assert changed_groups(fallback, before) == {L2, T}
    # The semantics of the cached run (frozen layers without dropout), up to the cache's fp16
    # rounding; with dropout in the frozen layers (the option off) training goes elsewhere.
    assert distance(cached, fallback) < 1e-3 < 5e-3 < distance(fallback, dropout)


def distance(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_scalar_mix_is_not_cached_and_says_why(tiny_model_dir):
    net, before, rows, events = train(tiny_model_dir, "top_only", epochs=2, model={"pooling": "scalar_mix"})
    (message, data), *rest = events.cache()
    assert not rest and not data["cached"] and "scalar_mix" in message
    assert rows == 2 * len(TRAIN)
    assert changed_groups(net, before) == {L2, T}


def test_without_a_schedule_nothing_changes(tiny_model_dir):
    _, _, rows, events = train(tiny_model_dir, "none", epochs=1)
    assert events.cache() == [] and rows == len(TRAIN)


def test_a_resumed_run_rebuilds_the_cache_and_ends_on_the_same_weights(tiny_model_dir, tmp_path):
    spec = checkpoint_spec("top_only")
    unbroken = run(spec, tiny_model_dir, tmp_path / "unbroken")
    with pytest.raises(Exception, match="stopped at step"):
        run(spec, tiny_model_dir, tmp_path / "broken", Interrupt(14))
    resumed_events = Interrupt()
    resumed = run(spec, tiny_model_dir, tmp_path / "broken", resumed_events)
    assert [k for k, _ in resumed_events.events].count(EVENT) == 1  # rebuilt, once
    assert_same_model(unbroken, resumed)


def test_adapt_runs_with_the_cache(tiny_model_dir):
    spec = job(optimization={"unfreezing": "top_only"}, training={"epochs": 2})
    events = Events()
    adapt(spec, TaskData(TRAIN, VALIDATION), tiny_model_dir, events)
    assert [d["cached"] for _, d in events.cache()] == [True]

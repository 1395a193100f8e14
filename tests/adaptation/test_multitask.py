"""Multi-task training: steps drawn among the tasks in the configured proportions, auxiliary heads
that train with the encoder and leave the main head alone, a masked-LM loss on the main text added to
every main step, and a main-task-alone finish."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from itertools import islice

import pytest
import torch
from transformers import AutoTokenizer

from app.adaptation import SilentCallbacks, TaskData, adapt
from app.adaptation.classification import ClassificationLoss
from app.adaptation.data import Batches, token_batches
from app.adaptation.masked_lm import lm_head, masked_batch_loss
from app.adaptation.multitask import MultiTaskBatches
from app.adaptation.objectives import ObjectiveContext, StepInputs, build_objectives
from app.adaptation.objectives.masked_lm import MainTextMaskedLM
from app.adaptation.resources import Resources
from app.adaptation.seeding import step_generator
from app.adaptation.tasks import TASKS
from app.adaptation.trainer import Trainer
from tests.adaptation.helpers import classifier, job
from tests.utils.data import sentiment, three_way

# ---- 1. task sampling ---------------------------------------------------------------------------------


@dataclass
class Aux:
    """What MultiTaskBatches reads of an auxiliary task: its name and its batches."""

    name: str
    batches: Batches


def fake_batches(rows: int, first_id: int, batch_size: int = 2) -> Batches:
    return Batches([[101, first_id + i, 102] for i in range(rows)], [i % 2 for i in range(rows)], batch_size, 0)


MAIN_BATCHES, AUX_BATCHES = 30, 10


def mixed(sampling, *extra: Aux) -> MultiTaskBatches:
    aux = Aux("aux", fake_batches(2 * AUX_BATCHES, 5000))
    return MultiTaskBatches(fake_batches(2 * MAIN_BATCHES, 1000), [aux, *extra], job(task_sampling=sampling))


ROOT = math.sqrt(MAIN_BATCHES) / (math.sqrt(MAIN_BATCHES) + math.sqrt(AUX_BATCHES))
EXPECTED_MAIN_SHARE = {"proportional": 0.75, "uniform": 0.5, "temperature": ROOT}  # temperature 2: sqrt of sizes


@pytest.mark.parametrize(
    "sampling",
    ["proportional", "uniform", {"name": "temperature", "temperature": 2}],
    ids=["proportional", "uniform", "temperature-2"],
)
def test_tasks_are_drawn_in_the_configured_proportions(sampling):
    name = sampling if isinstance(sampling, str) else sampling["name"]
    batches, rng, epochs = mixed(sampling), random.Random(0), 50
    counts: Counter = Counter()
    for _ in range(epochs):
        order = list(batches.training_order(rng))
        assert len(order) == len(batches) == MAIN_BATCHES + AUX_BATCHES  # an epoch: all tasks' batches
        counts.update(batch.task for batch in order)
    steps = epochs * (MAIN_BATCHES + AUX_BATCHES)
    assert set(counts) == {None, "aux"} and sum(counts.values()) == steps
    p = EXPECTED_MAIN_SHARE[name]
    assert batches.probabilities == pytest.approx([p, 1 - p])
    sigma = math.sqrt(steps * p * (1 - p))
    assert abs(counts[None] - steps * p) < 4 * sigma
    # The count tells the samplings apart: every other one's expectation is further than 4 sigma away.
    others = [q for other, q in EXPECTED_MAIN_SHARE.items() if other != name]
    assert all(abs(counts[None] - steps * q) > 4 * math.sqrt(steps * q * (1 - q)) for q in others)


def test_an_epoch_has_all_tasks_batches_and_a_task_that_runs_out_reshuffles_its_data():
    third = Aux("third", fake_batches(9, 9000, batch_size=3))  # 3 batches
    batches = mixed("uniform", third)  # each task a third of the steps: the small ones run out
    assert len(batches) == MAIN_BATCHES + AUX_BATCHES + 3
    rng = random.Random(1)
    for _ in range(5):
        order = list(batches.training_order(rng))
        assert len(order) == MAIN_BATCHES + AUX_BATCHES + 3
        for task, first_id, rows, size in ((None, 1000, 60, 2), ("aux", 5000, 20, 2), ("third", 9000, 9, 3)):
            drawn = [b for b in order if b.task == task]
            assert all(b.input_ids[:, 1].tolist() == [first_id + i for i in b.indices] for b in drawn)
            per_pass = rows // size
            # Each whole pass over a task's data sees every row once, in a fresh order.
            for start in range(0, len(drawn) - per_pass + 1, per_pass):
                rows_seen = sorted(i for b in drawn[start : start + per_pass] for i in b.indices)
                assert rows_seen == list(range(rows))
        counts = Counter(b.task for b in order)
        assert counts["third"] > 3  # it ran out and started again in this epoch


def test_the_same_random_state_replays_the_same_order_so_a_resumed_epoch_goes_on_alike():
    batches = mixed("proportional")

    def order(rng):
        return [(b.task, b.indices) for b in batches.training_order(rng)]

    rng = random.Random(7)
    order(rng)  # an epoch done: the state is somewhere in the middle of the run
    state = rng.getstate()
    first = order(rng)
    replay = random.Random()
    replay.setstate(state)
    assert order(replay) == first and replay.getstate() == rng.getstate()  # the next epoch too
    # The trainer resumes inside an epoch by skipping the batches done.
    replay.setstate(state)
    assert [(b.task, b.indices) for b in islice(batches.training_order(replay), 17, None)] == first[17:]
    assert order(random.Random(8)) != first  # another state, another order: the check can fail


# ---- 2 and 4. auxiliary classification tasks in a real run -------------------------------------------


MAIN = TaskData(sentiment(64, seed=1), sentiment(32, seed=2))  # 4 batches of 16
AUX_ROWS = three_way(48, seed=3)  # 3 batches of 16
WATCHED = ("encoder.encoder.layer.0.attention.self.query.weight", "encoder.encoder.layer.1.output.dense.weight")


def watched(model) -> dict[str, torch.Tensor]:
    weights = {name: p.detach().clone() for name, p in model.named_parameters() if name in WATCHED}
    weights |= {f"head.{k}": v.detach().clone() for k, v in model.head.state_dict().items()}
    if "task_topic" in model.extra_heads:
        weights |= {f"topic.{k}": v.detach().clone() for k, v in model.extra_heads["task_topic"].state_dict().items()}
    return weights


@pytest.fixture(scope="module")
def multitask_run(tiny_model_dir):
    """A run with a 3-class auxiliary task sampled with the 2-class main task for 2 epochs, then
    1 epoch of the main task alone, each step recorded by a spy around the trainer's real step."""
    steps, heads = [], {}
    real_step = Trainer._step

    def step(self, batch, number):
        before = watched(self.model)
        if "task_topic" in self.model.extra_heads:
            heads["topic"] = self.model.extra_heads["task_topic"]
        loss = real_step(self, batch, number)
        steps.append({"part": self.stage, "task": batch.task, "labels": batch.labels.clone()})
        steps[-1].update(number=number, before=before, after=watched(self.model))
        return loss

    spec = job(tasks=[{"name": "topic", "data": "aux3"}], main_task_epochs=1, training={"epochs": 2})
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(Trainer, "_step", step)
        result = adapt(spec, MAIN, tiny_model_dir, None, 60.0, Resources(tables={"aux3": AUX_ROWS}))
    return result, steps, heads["topic"]


def changed(step, prefix: str) -> bool:
    keys = [k for k in step["before"] if k.startswith(prefix)]
    assert keys
    return not all(torch.equal(step["before"][k], step["after"][k]) for k in keys)


def test_an_auxiliary_step_trains_its_own_head_and_the_encoder_and_not_the_main_head(multitask_run):
    result, steps, topic_head = multitask_run
    joint = [s for s in steps if s["part"] == "train"]
    aux = [s for s in joint if s["task"] == "topic"]
    main = [s for s in joint if s["task"] is None]
    assert aux and main
    for step in aux:
        assert not changed(step, "head.")  # bit-identical: no gradient, and so no weight decay either
        assert changed(step, "topic.") and changed(step, "encoder.")
    for step in main:
        assert changed(step, "head.") and changed(step, "encoder.") and not changed(step, "topic.")
    # Its labels are its own: 3 classes in its own head, on a 2-class job.
    assert topic_head.out_features == 3 and result.model.head[-1].out_features == 2
    assert result.labels == ["negative", "positive"]
    assert set(torch.cat([s["labels"] for s in aux]).tolist()) == {0, 1, 2}
    assert set(torch.cat([s["labels"] for s in main]).tolist()) == {0, 1}
    # The auxiliary head is the run's, not the model's.
    assert not len(result.model.extra_heads) and not any("task_" in k for k in result.model.state_dict())


def test_task_steps_and_history_cover_the_joint_part_and_the_main_task_alone(multitask_run):
    result, steps, _ = multitask_run
    joint = [s for s in steps if s["part"] == "train"]
    alone = [s for s in steps if s["part"] == "main task alone"]
    assert len(joint) == 2 * (4 + 3) and len(alone) == 4 and len(steps) == 18
    assert all(s["task"] is None for s in alone)
    recorded = Counter("main" if s["task"] is None else s["task"] for s in steps)
    assert result.metrics["task_steps"] == dict(recorded)
    assert sum(result.metrics["task_steps"].values()) == 18 and recorded["topic"] > 0
    history = result.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h.get("part") for h in history] == [None, None, "main task alone"]
    assert [h["step"] for h in history] == [7, 14, 4]  # each part counts its own steps


# ---- 3. a masked-LM task on the main text -------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def lm_objective(model, tokenizer, tasks: list[dict]) -> MainTextMaskedLM:
    spec = job(tasks=tasks)
    task = TASKS.get("single_label")(["negative", "positive"], None)
    context = ObjectiveContext(
        spec, model, tokenizer, torch.device("cpu"), MAIN.train, task, Resources(), SilentCallbacks()
    )
    [objective] = build_objectives(context)
    assert isinstance(objective, MainTextMaskedLM)
    return objective


def inputs_at(model, tokenizer, step: int) -> StepInputs:
    batch = token_batches(tokenizer, MAIN.train.texts, 64, None, 16).collate(list(range(16)))
    pooled = model.pooled(batch.input_ids, batch.attention_mask)
    return StepInputs(batch, model.head(pooled).float(), pooled, step)


def direct_lm_loss(model, tokenizer, batch, rate: float, generator) -> torch.Tensor:
    ids, mask = batch.input_ids, batch.attention_mask
    return masked_batch_loss(
        model.encoder, lm_head(model), ids, mask, tokenizer.all_special_ids, tokenizer.mask_token_id, rate, generator
    )


@torch.no_grad()
def test_a_masked_lm_task_without_data_is_weight_times_the_masked_lm_loss_of_the_main_batch(tiny_model_dir, tokenizer):
    model = classifier(tiny_model_dir, job())
    model.eval()  # no dropout: the same inputs give the same loss
    seed = job().training.seed
    inputs = inputs_at(model, tokenizer, step=7)
    plain = lm_objective(model, tokenizer, [{"name": "lm", "objective": "masked_lm"}]).loss(model, inputs)
    direct = direct_lm_loss(model, tokenizer, inputs.batch, 0.15, step_generator(seed, 7))
    assert torch.equal(plain, direct) and plain.item() > 1.0
    # The weight scales it.
    weighted = lm_objective(model, tokenizer, [{"name": "lm", "objective": "masked_lm", "weight": 2.5}])
    assert torch.equal(weighted.loss(model, inputs), 2.5 * direct)
    # Two such tasks add up, each with its weight, rate and masks of its own.
    both = lm_objective(
        model,
        tokenizer,
        [
            {"name": "lm", "objective": "masked_lm", "weight": 2.5},
            {"name": "lm2", "objective": "masked_lm", "weight": 0.5, "mask_rate": 0.3},
        ],
    )
    second = direct_lm_loss(model, tokenizer, inputs.batch, 0.3, step_generator(seed + 1, 7))
    assert torch.equal(both.loss(model, inputs), 2.5 * direct + 0.5 * second)
    # The masks are the step's: the same step masks the same tokens, another step other ones.
    assert torch.equal(weighted.loss(model, inputs_at(model, tokenizer, step=7)), 2.5 * direct)
    assert not torch.equal(weighted.loss(model, inputs_at(model, tokenizer, step=8)), 2.5 * direct)


def test_every_main_step_adds_the_masked_lm_loss_to_the_main_loss(tiny_model_dir, monkeypatch):
    steps: list[dict] = []
    real_step, real_loss = ClassificationLoss.loss, MainTextMaskedLM.loss

    def step(self, batch, number):
        steps.append({"number": number, "lm": []})
        total, main = real_step(self, batch, number)
        steps[-1].update(total=total.detach().clone(), main=main)
        return total, main

    def loss(self, model, inputs):
        value = real_loss(self, model, inputs)
        steps[-1]["lm"].append((inputs.step, value.detach().clone()))
        return value

    monkeypatch.setattr(ClassificationLoss, "loss", step)
    monkeypatch.setattr(MainTextMaskedLM, "loss", loss)
    spec = job(tasks=[{"name": "lm", "objective": "masked_lm", "weight": 0.5}], training={"epochs": 1})
    result = adapt(spec, MAIN, tiny_model_dir, None, 60.0)
    assert [s["number"] for s in steps] == [0, 1, 2, 3]
    for s in steps:
        [(number, lm)] = s["lm"]  # once per main step, with that step's number (its masks)
        assert number == s["number"] and lm.item() > 0.5
        assert torch.allclose(s["total"], s["main"] + lm)
    assert result.metrics["task_steps"] == {"main": 4}  # a data-less task is not a sampled one
    assert not len(result.model.extra_heads)

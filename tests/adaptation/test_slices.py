"""Slices: the rules select what they say, a slice head learns from its slice alone, metrics per slice."""

import pytest
import torch
from transformers import AutoTokenizer

from app.adaptation import TaskData, adapt
from app.adaptation.data import Batch, LabeledTexts
from app.adaptation.objectives import ObjectiveContext, StepInputs
from app.adaptation.objectives.slices import SliceHeads, examples, head_name
from app.adaptation.resources import Resources
from app.adaptation.slicing import members
from app.adaptation.tasks import TASKS
from app.schemas.signal import SliceSpec
from tests.adaptation.helpers import classifier, job
from tests.utils.data import sentiment

TEXTS = ["What is a movie?", "a great film", "Terrible, terrible acting in this one", "why so dull?"]
LABELS = ["q", "pos", "neg", "q"]


@pytest.fixture(scope="module")
def found(tiny_model_dir):
    return examples(AutoTokenizer.from_pretrained(tiny_model_dir), TEXTS, LABELS, 64)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"regex": r"\?$"}, [True, False, False, True]),
        ({"contains": ["TERRIBLE", "film"]}, [False, True, True, False]),  # whole words, any case
        ({"contains": ["fil"]}, [False, False, False, False]),  # not a part of a word
        ({"max_tokens": 5}, [False, True, False, False]),  # [CLS] a great film [SEP]
        ({"min_tokens": 8}, [False, False, True, False]),
        ({"label_in": ["pos", "neg"]}, [False, True, True, False]),
    ],
)
def test_rules_select_what_they_say(found, rule, expected):
    assert members(SliceSpec(name="s", **rule), found) == expected


def test_a_slice_has_exactly_one_rule():
    with pytest.raises(ValueError, match="exactly one rule"):
        SliceSpec(name="s", regex="a", max_tokens=3)
    with pytest.raises(ValueError, match="regex does not compile"):
        SliceSpec(name="s", regex="(")


class Events:
    def __init__(self):
        self.seen = []

    def on_event(self, kind, message, data):
        self.seen.append((kind, message, data))


def heads(tiny_model_dir, spec, train):
    model = classifier(tiny_model_dir, spec)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = TASKS.get("single_label")(["negative", "positive"], None)
    events = Events()
    ctx = ObjectiveContext(spec, model, tokenizer, torch.device("cpu"), train, task, Resources(), events)
    return model, SliceHeads(ctx), events


def test_a_slice_head_receives_only_its_slices_examples(tiny_model_dir):
    train = LabeledTexts(["a great film", "terrible acting, so dull", "good", "bad plot"], ["positive", "negative"] * 2)
    spec = job(slices=[{"name": "short", "max_tokens": 4, "weight": 3.0}])
    model, objective, _ = heads(tiny_model_dir, spec, train)
    assert objective.membership["short"].tolist() == [False, False, True, True]
    pooled = torch.randn(4, 32, requires_grad=True)
    batch = Batch([0, 1, 2, 3], None, None, torch.tensor([1, 0, 1, 0]))
    loss = objective.loss(model, StepInputs(batch, torch.zeros(4, 2), pooled, 0))
    loss.backward()
    assert pooled.grad[:2].abs().sum() == 0  # rows outside the slice give the slice head nothing
    assert pooled.grad[2:].abs().sum() > 0
    # The loss is the slice's weight times the task loss of its rows alone.
    head = model.extra_heads[head_name("short")]
    expected = 3.0 * torch.nn.functional.cross_entropy(head(pooled[2:]), torch.tensor([1, 0]))
    torch.testing.assert_close(loss, expected)
    # A batch with no slice member adds nothing.
    outside = Batch([0, 1], None, None, torch.tensor([1, 0]))
    assert objective.loss(model, StepInputs(outside, torch.zeros(2, 2), pooled[:2], 0)).item() == 0.0


def test_a_slice_that_matches_nothing_is_a_warning_not_a_failure(tiny_model_dir):
    spec = job(slices=[{"name": "never", "regex": "zzzz"}])
    _, objective, events = heads(tiny_model_dir, spec, sentiment(20))
    assert [kind for kind, _, _ in events.seen] == ["slice_empty", "slices"]
    assert "never" in events.seen[0][1] and "matches no training example" in events.seen[0][1]


def test_metrics_are_reported_for_each_slice_and_heads_are_not_saved(tiny_model_dir):
    spec = job(
        slices=[{"name": "short", "max_tokens": 6, "weight": 2.0}, {"name": "none", "regex": "zzzz"}],
        training={"epochs": 3},
    )
    data = TaskData(sentiment(200), sentiment(80, seed=2), sentiment(80, seed=3))
    result = adapt(spec, data, tiny_model_dir)
    report = result.metrics["slices"]
    assert set(report) == {"validation", "test"}
    found = examples(result.tokenizer, data.test.texts, data.test.labels, 64)
    expected = sum(members(spec.slices[0], found))
    assert report["test"]["short"]["examples"] == expected > 0
    assert 0 <= report["test"]["short"]["accuracy"] <= 1
    assert report["test"]["none"] == {"examples": 0}
    assert not any(name.startswith("extra_heads") for name in result.model.state_dict())
    assert result.trainable_params == result.total_params  # fine-tuning: every served weight trained

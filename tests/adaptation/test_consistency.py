"""Consistency training (UDA): the loss, where its gradient goes, and the perturbations."""

import torch
from transformers import AutoTokenizer

from app.adaptation import TaskData, adapt
from app.adaptation.masked_lm import maskable_positions
from app.adaptation.objectives import ObjectiveContext, StepInputs
from app.adaptation.objectives.consistency import ConsistencyObjective, consistency_loss
from app.adaptation.perturbations import PERTURBATIONS, Tokens
from app.adaptation.perturbations.token_deletion import TokenDeletion
from app.adaptation.perturbations.token_mask import TokenMask
from app.adaptation.perturbations.token_swap import TokenSwap
from app.adaptation.resources import Resources
from app.adaptation.tasks import TASKS
from app.schemas.signal import Consistency
from tests.adaptation.helpers import classifier, job
from tests.utils.data import sentiment


def logits(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_identical_predictions_give_zero_loss_without_sharpening():
    same = logits([2.0, -1.0, 0.5], [0.1, 0.2, 0.3])
    assert consistency_loss(same, same.clone(), None, None).item() == 0.0


def test_sharpening_pulls_even_identical_predictions_toward_confidence():
    same = logits([2.0, -1.0, 0.5])
    assert consistency_loss(same, same.clone(), 0.4, None).item() > 0.01
    # ...and the loss is KL(softmax(z / 0.4) || softmax(z)), computed by hand.
    target = (same / 0.4).softmax(-1)
    expected = (target * (target.log() - same.log_softmax(-1))).sum()
    torch.testing.assert_close(consistency_loss(same, same.clone(), 0.4, None), expected)


def test_gradient_reaches_the_perturbed_branch_only_and_only_confident_rows():
    target = logits([4.0, -4.0], [0.1, 0.0]).requires_grad_()  # row 1 is unconfident (p ~ 0.52)
    perturbed = logits([0.0, 0.0], [1.0, -1.0]).requires_grad_()
    loss = consistency_loss(target, perturbed, 0.4, 0.8)
    loss.backward()
    assert target.grad is None  # the target is fixed: no gradient flows into it
    assert perturbed.grad[0].abs().sum() > 0
    assert torch.equal(perturbed.grad[1], torch.zeros(2))  # below the confidence threshold: ignored


def test_all_rows_below_threshold_give_zero_loss():
    assert consistency_loss(logits([0.1, 0.0]), logits([5.0, -5.0]), 0.4, 0.9).item() == 0.0


def tokens(tokenizer, texts):
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    maskable = maskable_positions(ids, mask, tokenizer.all_special_ids)
    return Tokens(ids, mask, maskable, tokenizer.mask_token_id, tokenizer.pad_token_id)


def test_perturbations_touch_only_real_tokens(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["a movie that is good and warm and funny", "bad", "the plot was dull and slow but the cast was great"]
    t = tokens(tokenizer, texts)
    generator = torch.Generator().manual_seed(0)
    masked, mask = PERTURBATIONS.get("token_mask")(t, TokenMask(rate=0.5), generator)
    changed = masked != t.input_ids
    assert changed.any() and not (changed & ~t.maskable).any()  # [CLS], [SEP] and padding never change
    assert (masked[changed] == tokenizer.mask_token_id).all() and torch.equal(mask, t.attention_mask)

    swapped, _ = PERTURBATIONS.get("token_swap")(t, TokenSwap(rate=0.5), torch.Generator().manual_seed(0))
    assert not torch.equal(swapped, t.input_ids)
    for row in range(len(texts)):  # a swap reorders a row's real tokens, it never adds or drops one
        assert sorted(swapped[row].tolist()) == sorted(t.input_ids[row].tolist())
    assert not ((swapped != t.input_ids) & ~t.maskable).any()

    kept, kept_mask = PERTURBATIONS.get("token_deletion")(t, TokenDeletion(rate=0.5), torch.Generator().manual_seed(0))
    for row in range(len(texts)):
        before = t.input_ids[row][t.attention_mask[row].bool()].tolist()
        after = kept[row][kept_mask[row].bool()].tolist()
        assert after[0] == tokenizer.cls_token_id and after[-1] == tokenizer.sep_token_id
        it = iter(before)
        assert all(token in it for token in after)  # what is left keeps its order
    assert kept_mask.sum() < t.attention_mask.sum()


def context(tiny_model_dir, spec, rows):
    model = classifier(tiny_model_dir, spec)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = TASKS.get("single_label")(["negative", "positive"], None)
    return model, ObjectiveContext(
        spec, model, tokenizer, torch.device("cpu"), sentiment(8), task, Resources(tables={"u": rows}), _Quiet()
    )


class _Quiet:
    def on_event(self, *args):
        pass


def test_dropout_perturbation_of_a_model_without_dropout_costs_nothing(tiny_model_dir):
    rows = [{"text": t} for t in sentiment(40, seed=4).texts]
    spec = job(
        consistency={"data": "u", "perturbation": "dropout", "sharpen_temperature": None, "confidence_threshold": None}
    )
    model, ctx = context(tiny_model_dir, spec, rows)
    objective = ConsistencyObjective(spec.consistency, ctx)
    model.eval()  # no dropout: x' is x and the model is deterministic
    empty = torch.zeros(0)
    inputs = StepInputs(None, empty, empty, step=3)
    assert objective.loss(model, inputs).item() == 0.0
    model.train()
    assert objective.loss(model, inputs).item() > 0.0  # two dropout masks disagree


def test_the_same_step_draws_the_same_unlabeled_batch_and_perturbation(tiny_model_dir):
    rows = [{"text": t} for t in sentiment(100, seed=4).texts]
    spec = job(consistency={"data": "u"})
    _, ctx = context(tiny_model_dir, spec, rows)
    a, b = ConsistencyObjective(spec.consistency, ctx), ConsistencyObjective(spec.consistency, ctx)
    assert a.batches.at(5).indices == b.batches.at(5).indices != a.batches.at(6).indices
    assert torch.equal(a.perturbed(a.batches.at(5), 5)[0], b.perturbed(b.batches.at(5), 5)[0])
    seen = [i for step in range(len(rows) // 16) for i in a.batches.at(step).indices]
    assert len(seen) == len(set(seen))  # one pass visits each example at most once


def test_a_job_with_consistency_trains_and_still_learns(tiny_model_dir):
    unlabeled = [{"text": t} for t in sentiment(200, seed=9).texts]
    spec = job(consistency={"data": "u", "weight": 1.0}, training={"epochs": 3})
    result = adapt(
        spec,
        TaskData(sentiment(200), sentiment(60, seed=2)),
        tiny_model_dir,
        resources=Resources(tables={"u": unlabeled}),
    )
    assert result.metrics["accuracy"] >= 0.9
    assert Consistency.model_fields["sharpen_temperature"].default == 0.4  # UDA's setting

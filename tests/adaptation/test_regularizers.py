"""Regularizers: the L2-SP gradient is its closed form; EWC weights it by a real Fisher; source
distillation is zero against itself and pulls toward the source."""

import copy

import pytest
import torch

from app.adaptation.artifact import LoadedClassifier
from app.adaptation.regularizers import REGULARIZERS, RegularizerContext
from app.adaptation.regularizers.ewc import EWC
from app.adaptation.regularizers.l2_sp import L2SP
from app.adaptation.regularizers.source_distillation import SourceDistillation
from app.adaptation.resources import Resources
from app.adaptation.strategies import STRATEGIES
from app.schemas.references import DatasetRef, ModelRef
from tests.adaptation.helpers import classifier, job
from tests.adaptation.test_groups_and_unfreezing import _tokenizer
from tests.utils.data import sentiment


@pytest.fixture
def setup(tiny_model_dir):
    model = classifier(tiny_model_dir, job())
    STRATEGIES.get("all")(model)
    tokenizer = _tokenizer(tiny_model_dir)
    resources = Resources(tables={"ds_text": [{"text": text} for text in sentiment(64).texts]})
    context = RegularizerContext(model, tokenizer, torch.device("cpu"), 32, 8, 0, "text", resources)
    return model, tokenizer, context


def nudge(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.01)


def test_l2_sp_gradient_is_alpha_times_distance_and_beta_times_new_weight(setup):
    model, _, context = setup
    penalty = REGULARIZERS.get("l2_sp")(L2SP(alpha=0.3, beta=0.07), context)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    nudge(model)
    model.encoder.encoder.layer[0].attention.self.query.weight.requires_grad_(False)
    logits = torch.zeros(1)
    penalty.penalty(model, None, None, logits).backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None  # a frozen weight is left alone
        elif name.startswith("encoder."):
            assert torch.allclose(p.grad, 0.3 * (p.detach() - start[name]), atol=1e-7)
        else:
            assert torch.allclose(p.grad, 0.07 * p.detach(), atol=1e-7)


def test_l2_sp_is_zero_at_the_pretrained_weights_without_beta(setup):
    model, _, context = setup
    penalty = REGULARIZERS.get("l2_sp")(L2SP(alpha=1.0, beta=0.0), context)
    assert penalty.penalty(model, None, None, torch.zeros(1)).item() == 0.0


def test_ewc_fisher_is_a_real_masked_lm_estimate_and_weights_the_pull(setup):
    model, _, context = setup
    penalty = REGULARIZERS.get("ewc")(EWC(weight=2.0, fisher_data="ds_text", fisher_batches=4), context)
    fisher = penalty.fisher
    assert set(fisher) == {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    assert all((f >= 0).all() for f in fisher.values())
    assert fisher["encoder.encoder.layer.1.attention.self.query.weight"].sum() > 0
    rows = fisher["encoder.embeddings.word_embeddings.weight"].sum(dim=1)
    seen = torch.zeros_like(rows, dtype=torch.bool)
    seen[sorted({i for ids in context.tokenizer(sentiment(64).texts)["input_ids"] for i in ids})] = True
    assert rows[seen].mean() > 10 * rows[~seen].mean()  # the text's own tokens carry the information
    assert all(p.requires_grad for p in model.parameters())  # requires_grad restored after estimating
    assert penalty.penalty(model, None, None, torch.zeros(1)).item() == 0.0
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    nudge(model)
    penalty.penalty(model, None, None, torch.zeros(1)).backward()
    for name, p in model.named_parameters():
        if name in fisher:
            assert torch.allclose(p.grad, 2.0 * fisher[name] * (p.detach() - start[name]), atol=1e-9)


def test_source_distillation_is_zero_against_itself_and_pulls_toward_the_source(setup):
    model, tokenizer, context = setup
    context.resources.models["mdl_src"] = LoadedClassifier(copy.deepcopy(model), tokenizer, ["neg", "pos"], 32)
    penalty = REGULARIZERS.get("source_distillation")(
        SourceDistillation(source_model="mdl_src", weight=1.0, temperature=2.0), context
    )
    batch = tokenizer(sentiment(8).texts, padding=True, return_tensors="pt")
    model.eval()
    logits = model(batch["input_ids"], batch["attention_mask"])
    assert penalty.penalty(model, batch["input_ids"], batch["attention_mask"], logits).item() == pytest.approx(
        0, abs=1e-7
    )
    with torch.no_grad():
        model.head[1].bias.add_(torch.tensor([1.0, -1.0]))
    logits = model(batch["input_ids"], batch["attention_mask"])
    value = penalty.penalty(model, batch["input_ids"], batch["attention_mask"], logits)
    assert value.item() > 0
    value.backward()
    assert model.head[1].bias.grad[0] > 0 > model.head[1].bias.grad[1]  # descent undoes the shift
    assert all(p.grad is None for p in penalty.source.parameters())


def test_a_regularizer_declares_the_dataset_or_model_it_reads():
    spec = job(
        base_model="minilm-l6",
        text_field="sentence",
        optimization={
            "regularizers": [
                {"name": "ewc", "fisher_data": "ds_fisher"},
                {"name": "source_distillation", "source_model": "mdl_src"},
            ]
        },
    )
    assert DatasetRef("optimization.regularizers.0.fisher_data", "ds_fisher", ("sentence",)) in spec.dataset_refs()
    assert spec.model_refs() == [ModelRef("optimization.regularizers.1.source_model", "mdl_src", "source", "minilm-l6")]

"""Adapters and LoRA: no change at step 0, only their own weights train and are stored, reload exact."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.adaptation import TaskData, adapt, load_classifier, predict_proba, save_classifier
from app.adaptation.model import load_pretrained_encoder
from app.schemas.recipes import expand
from tests.adaptation.helpers import classifier, job
from tests.adaptation.test_groups_and_unfreezing import _tokenizer
from tests.utils.data import sentiment


def encoder_outputs(encoder, tokenizer):
    batch = tokenizer(sentiment(8).texts, padding=True, return_tensors="pt")
    encoder.eval()
    with torch.no_grad():
        return encoder(**batch, output_hidden_states=True).hidden_states


@pytest.mark.parametrize(
    "model_config",
    [
        {"adapters": {"placement": "houlsby", "size": 8}},
        {"adapters": {"placement": "pfeiffer", "size": 8}},
        {"lora": {"r": 4, "target_modules": ["query", "value"]}},
    ],
)
def test_the_adapted_encoder_computes_exactly_the_base_at_step_0(tiny_model_dir, model_config):
    tokenizer = _tokenizer(tiny_model_dir)
    base = encoder_outputs(load_pretrained_encoder(tiny_model_dir), tokenizer)
    adapted = encoder_outputs(classifier(tiny_model_dir, job(model=model_config)).encoder, tokenizer)
    assert all(torch.equal(a, b) for a, b in zip(base, adapted, strict=True))


def test_houlsby_puts_two_adapters_per_layer_pfeiffer_one(tiny_model_dir):
    def count(placement):
        model = classifier(tiny_model_dir, job(model={"adapters": {"placement": placement, "size": 8}}))
        return sum(1 for n, _ in model.named_modules() if n.endswith(".adapter"))

    assert (count("houlsby"), count("pfeiffer")) == (4, 2)


STRATEGY_SPECS = {
    "adapters": {"recipe": "adapters", "model": {"adapters": {"size": 8}}},
    "lora": {"recipe": "lora", "model": {"lora": {"r": 4}}},
    "head_only": {"recipe": "feature_extraction"},
}


def own(name: str, strategy: str) -> bool:
    if not name.startswith("encoder."):
        return True  # pooling and head
    if strategy == "adapters":
        return ".adapter." in name or "LayerNorm" in name
    return strategy == "lora" and ".lora_" in name


@pytest.fixture(scope="module", params=sorted(STRATEGY_SPECS))
def trained(request, tiny_model_dir):
    spec = expand(
        {
            "base_model": "tiny-bert",
            "data": {"train": "ds"},
            **STRATEGY_SPECS[request.param],
            "training": {"epochs": 3, "batch_size": 16},
        }
    )
    result = adapt(spec, TaskData(sentiment(200, seed=1), sentiment(60, seed=2)), tiny_model_dir)
    return request.param, spec, result


def test_only_its_own_weights_trained_and_the_rest_is_bit_identical(trained, tiny_model_dir):
    strategy, _, result = trained
    pretrained = load_file(str(tiny_model_dir / "model.safetensors"))
    compared = 0
    for name, p in result.model.named_parameters():
        fixed = strategy == "head_only" and name == "pooling.gamma"  # the full-batch fit keeps the mix's scale
        assert p.requires_grad == (own(name, strategy) and not fixed), name
        base_name = name.removeprefix("encoder.").replace(".inner.", ".").replace(".base_layer.", ".")
        if fixed:
            assert p.item() == 1.0  # as initialised
            continue
        if not own(name, strategy):
            assert torch.equal(p.detach(), pretrained[base_name]), name
            compared += 1
    assert compared >= 25
    assert result.trainable_params < 0.2 * result.total_params
    # (Whether so few weights learn is checked on the real MiniLM: tests/adaptation/test_real_minilm.py.)


def test_the_artifact_holds_only_its_own_weights_and_reloads_exactly(trained, tiny_model_dir, tmp_path: Path):
    strategy, spec, result = trained
    size = save_classifier(
        result.model,
        result.tokenizer,
        result.labels,
        spec.model,
        64,
        tmp_path,
        base_model="tiny-bert",
        own_weights_only=True,
    )
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert set(stored) == {n for n, _ in result.model.named_parameters() if own(n, strategy)}
    assert size < (tiny_model_dir / "model.safetensors").stat().st_size
    with pytest.raises(ValueError, match="its base model 'tiny-bert' is needed"):
        load_classifier(tmp_path)
    loaded = load_classifier(tmp_path, tiny_model_dir)
    texts = sentiment(30, seed=7).texts
    before = predict_proba(result.model, result.tokenizer, texts, 64)
    assert torch.equal(before, predict_proba(loaded.model, loaded.tokenizer, texts, 64))


def test_lora_targets_that_do_not_exist_are_named(tiny_model_dir):
    with pytest.raises(ValueError, match="model.lora.target_modules"):
        classifier(tiny_model_dir, job(model={"lora": {"target_modules": ["q_proj"]}}))

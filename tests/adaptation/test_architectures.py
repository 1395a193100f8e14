"""The engine over every encoder family it supports (app/adaptation/architectures.py), each a tiny
random model built from its config: the layer groups hold every weight once, every recipe trains
and leaves bit-identical what it must not train, a masked-LM stage and a student cut work, and a
shared base serves adapter, LoRA and head-only models exactly as each loaded alone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.adaptation import TaskData, adapt
from app.adaptation.architectures import of_encoder, supported
from app.adaptation.group_names import EMBEDDINGS, layer_name
from app.adaptation.groups import layer_groups
from app.adaptation.model import load_pretrained_encoder
from app.adaptation.resources import Resources
from app.adaptation.strategies.adapters import layer_norm_parameters
from app.schemas.recipes import RECIPES, expand
from app.serving.cache import ModelCache
from tests.adaptation.helpers import classifier, job
from tests.adaptation.test_distillation import FixedTeacher
from tests.serving.test_deployments import alone, probabilities
from tests.utils.data import sentiment
from tests.utils.tiny_model import FAMILY_CONFIG, build_tiny
from tests.utils.trained import train_and_save

FAMILIES = supported()
TRAIN = sentiment(32, seed=1)  # 2 batches of 16 per epoch
FISHER = [{"text": text} for text in sentiment(16, seed=4).texts]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return request.param, build_tiny(request.param, tmp_path_factory.mktemp(request.param))


def spec_of(recipe: str, **extra):
    raw = {"base_model": "tiny", "recipe": recipe, "data": {"train": "ds", "validation_fraction": 0}}
    raw["training"] = {"batch_size": 16, "seed": 0}
    if recipe == "ewc":
        raw["optimization"] = {"regularizers": [{"name": "ewc", "weight": 100.0, "fisher_data": "fisher"}]}
    return expand({**raw, **extra})


def base_name(name: str) -> str:
    """A trained encoder weight's name in the base model's file (adapters wrap as `inner`, peft as `base_layer`)."""
    return name.removeprefix("encoder.").replace(".inner.", ".").replace(".base_layer.", ".")


def must_stay(recipe: str, model, name: str, top: str) -> bool:
    """Whether a recipe must leave this encoder weight exactly as pretrained."""
    if recipe == "feature_extraction":
        return True
    if recipe == "adapters":
        return ".adapter." not in name and name not in layer_norm_parameters(model)
    if recipe == "lora":
        return ".lora_" not in name
    if recipe == "top_only":
        return name not in top
    return False


def test_a_tiny_model_is_built_for_every_supported_family():
    assert (
        sorted(FAMILY_CONFIG)
        == FAMILIES
        == sorted(["bert", "deberta-v2", "distilbert", "electra", "modernbert", "mpnet", "roberta", "xlm-roberta"])
    )


def test_the_layer_groups_hold_every_weight_once_and_the_embeddings_their_tables(family):
    model_type, path = family
    model = classifier(path, job())
    groups = {group.name: set(group.parameter_names) for group in layer_groups(model, model.num_layers)}
    names = [name for name, _ in model.named_parameters()]
    assert sorted(n for group in groups.values() for n in group) == sorted(names)
    assert all(groups[layer_name(i)] for i in range(model.num_layers))
    word_embeddings = next(n for n, p in model.named_parameters() if p is model.encoder.get_input_embeddings().weight)
    assert word_embeddings in groups[EMBEDDINGS]
    for module in of_encoder(model.encoder).embeddings:
        assert {n for n in names if n.startswith(f"encoder.{module}.")} <= groups[EMBEDDINGS], module
    # Every layer's own weights are in its group: the attention output projection of layer 1, say.
    attention_output = of_encoder(model.encoder).attention_output
    assert any(n.endswith(f"{attention_output}.weight") for n in groups[layer_name(0)]), model_type


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_trains_and_leaves_untouched_what_it_does_not_train(family, recipe):
    model_type, path = family
    spec = spec_of(recipe)
    result = adapt(spec, TaskData(TRAIN), path, resources=Resources(tables={"fisher": FISHER}))
    assert all(math.isfinite(point["loss"]) for point in result.metrics["loss_curve"]), (model_type, recipe)
    pretrained = load_file(str(path / "model.safetensors"))
    groups = layer_groups(result.model, result.model.num_layers)
    top = {name for group in groups if group.depth_from_top == 1 for name in group.parameter_names}
    kept, moved = [], []
    for name, parameter in result.model.encoder.named_parameters(prefix="encoder"):
        if base_name(name) not in pretrained:
            continue  # the recipe's own weights (adapters, LoRA)
        same = torch.equal(parameter.detach().cpu(), pretrained[base_name(name)])
        (kept if same else moved).append(name)
        if must_stay(recipe, result.model, name, top):
            assert same, f"{model_type} {recipe}: {name} changed"
    assert kept or moved
    if recipe not in ("feature_extraction", "adapters", "lora"):
        assert moved, f"{model_type} {recipe}: no pretrained weight trained"


def test_a_masked_lm_stage_trains_the_encoder_on_its_text(family):
    model_type, path = family
    stage = {"objective": "masked_lm", "data": "dom", "epochs": 1, "learning_rate": 1e-2}
    spec = job(stages=[stage], training={"epochs": 1})
    texts = [{"text": text} for text in sentiment(32, seed=5).texts]
    result = adapt(spec, TaskData(TRAIN), path, resources=Resources(tables={"dom": texts}))
    (record,) = result.metrics["stages"]
    assert record["held_out_loss_after"] < record["held_out_loss_before"], model_type


def test_a_student_is_cut_to_fewer_layers_and_trains(family):
    model_type, path = family
    spec = job(teacher="t", student_layers=1, training={"epochs": 1}, distillation={"student_init": "base"})
    result = adapt(spec, TaskData(TRAIN), path, resources=Resources(models={"t": FixedTeacher()}))
    assert result.model.num_layers == result.model.encoder.config.num_hidden_layers == 1
    assert result.metrics["distillation"] == {"teacher": "t", "student_layers": 1}


def same(served: torch.Tensor, alone: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(served, alone, atol=1e-5, rtol=1e-4, msg=what)


SERVED = {
    "adapters": {"recipe": "adapters", "model": {"adapters": {"placement": "houlsby", "size": 8}}},
    "lora": {"recipe": "lora", "model": {"lora": {"r": 4, "alpha": 8}}},
    "head_only": {"recipe": "feature_extraction", "model": {"pooling": "max"}},
}


def test_a_shared_base_serves_each_model_as_it_computes_alone(family, tmp_path: Path):
    """Adapter and LoRA weights set to random values first, so each model differs from its base."""
    model_type, path = family
    saved = {kind: train_and_save(path, o, tmp_path / kind, n) for n, (kind, o) in enumerate(SERVED.items())}
    cache = ModelCache(max_models=10, max_bytes=10**12)
    served = {kind: cache.get(kind, saved[kind], path) for kind in SERVED}
    texts = ["the movie was great", "awful plot", "really quite long and terrible acting", "lovely"]
    for kind, model in served.items():
        [predictions] = model.deployment.predict([(kind, texts)], max_batch=64)
        expected = alone(saved[kind], path, texts)
        same(probabilities(predictions), expected, f"{model_type} {kind}")
    shared = [kind for kind in SERVED if served[kind].deployment is served["head_only"].deployment]
    if of_encoder(load_pretrained_encoder(path)).unroutable:
        # DeBERTa runs its relative-position table through the LoRA-adapted query and key projections
        # and the layer norm that adapters train: those models get their own encoder.
        assert shared == ["head_only"], model_type
        return
    assert shared == list(SERVED), f"{model_type}: one resident base for the three"
    requests = [("adapters", texts[:2]), ("lora", texts), ("head_only", texts[1:])]
    results = served["head_only"].deployment.predict(requests, max_batch=64)
    for (kind, batch), predictions in zip(requests, results, strict=True):
        expected = alone(saved[kind], path, batch)
        same(probabilities(predictions), expected, f"{model_type} {kind}")

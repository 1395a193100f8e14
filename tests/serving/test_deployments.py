"""Shared-base serving computes exactly what each model computes alone, in one forward pass."""

from pathlib import Path

import pytest
import torch

from app.adaptation import load_classifier, predict_proba
from app.serving.cache import ModelCache
from app.serving.deployments import ServingOptions, module_bytes
from app.serving.routed import Routed

TEXTS = ["the movie was great", "awful plot", "really quite long and terrible acting", "lovely"]


def alone(directory: Path, base: Path, texts: list[str]) -> torch.Tensor:
    loaded = load_classifier(directory, base)
    return predict_proba(loaded.model, loaded.tokenizer, texts, loaded.max_length)


def probabilities(predictions: list[dict]) -> torch.Tensor:
    return torch.tensor([list(p["scores"].values()) for p in predictions])


def test_models_of_one_base_share_its_encoder(trained_models, tiny_model_dir):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    served = {kind: cache.get(kind, trained_models[kind], tiny_model_dir) for kind in trained_models}
    shared = {served[k].deployment for k in ("adapters", "lora", "head_only")}
    assert len(shared) == 1, "adapter, LoRA and head-only models run on one resident base"
    assert served["full"].deployment not in shared, "a fully fine-tuned model has its own encoder"
    (base,) = shared
    routed = {name for name, m in base.encoder.named_modules() if isinstance(m, Routed)}
    changed_in_each_layer = {
        "attention.output.dense",  # houlsby adapter
        "output.dense",  # houlsby adapter
        "attention.output.LayerNorm",  # trained with the adapters
        "output.LayerNorm",
        "attention.self.query",  # LoRA
        "attention.self.value",
    }
    expected = {f"encoder.layer.{i}.{place}" for i in range(2) for place in changed_in_each_layer}
    assert routed == expected | {"embeddings.LayerNorm"}


@pytest.mark.parametrize("kind", ["adapters", "lora", "head_only", "full"])
def test_served_alone_equals_the_model_loaded_whole(trained_models, tiny_model_dir, kind):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    served = cache.get(kind, trained_models[kind], tiny_model_dir)
    [predictions] = served.deployment.predict([(kind, TEXTS)], max_batch=64)
    expected = alone(trained_models[kind], tiny_model_dir, TEXTS)
    torch.testing.assert_close(probabilities(predictions), expected, atol=1e-5, rtol=1e-4)


def test_a_mixed_batch_equals_each_model_alone_and_runs_the_base_once(trained_models, tiny_model_dir):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    kinds = ["lora", "adapters", "head_only"]
    served = [cache.get(kind, trained_models[kind], tiny_model_dir) for kind in kinds]
    deployment = served[0].deployment
    calls = []
    first_linear = deployment.encoder.encoder.layer[0].intermediate.dense  # not changed by any model
    handle = first_linear.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        requests = [("adapters", TEXTS[:2]), ("lora", TEXTS), ("head_only", TEXTS[1:]), ("adapters", TEXTS[2:])]
        results = deployment.predict(requests, max_batch=64)
    finally:
        handle.remove()
    assert calls == [2 + 4 + 3 + 2], "one forward pass over every row of every model"
    for (kind, texts), predictions in zip(requests, results, strict=True):
        expected = alone(trained_models[kind], tiny_model_dir, texts)
        torch.testing.assert_close(probabilities(predictions), expected, atol=1e-5, rtol=1e-4)
    # The models really differ: the same text gets different probabilities from each.
    assert not torch.allclose(probabilities(results[0])[0], probabilities(results[1])[0], atol=1e-3)


def test_the_budget_counts_a_shared_base_once_and_frees_it_with_its_last_model(trained_models, tiny_model_dir):
    cache = ModelCache(max_models=10, max_bytes=10**12)
    full = cache.get("full", trained_models["full"], tiny_model_dir)
    one_full_model = cache.resident_bytes()
    adapters = cache.get("adapters", trained_models["adapters"], tiny_model_dir)
    lora = cache.get("lora", trained_models["lora"], tiny_model_dir)
    base_bytes = adapters.deployment.nbytes
    assert base_bytes == module_bytes(full.deployment.encoder), "the base is one encoder like the full model's"
    own = sum(adapters.deployment.members[k].nbytes for k in ("adapters", "lora"))
    assert cache.resident_bytes() == one_full_model + base_bytes + own
    assert own < base_bytes / 5, "an adapter or LoRA model adds a small fraction of its base"
    cache.evict("adapters")
    assert "adapters" not in lora.deployment.members and lora.deployment.members
    cache.evict("lora")
    assert cache.resident_bytes() == one_full_model, "the base went with its last model"
    assert cache.loaded() == ["full"] and full.deployment.members


def test_least_recently_used_models_are_evicted_past_the_memory_budget(trained_models, tiny_model_dir):
    probe = ModelCache(max_models=10, max_bytes=10**12)
    probe.get("full", trained_models["full"], tiny_model_dir)
    one_model = probe.resident_bytes()
    cache = ModelCache(max_models=10, max_bytes=int(one_model * 2.5))
    for name in ("a", "b"):
        cache.get(name, trained_models["full"], tiny_model_dir)
    cache.get("a", trained_models["full"], tiny_model_dir)  # a is now the most recently used
    cache.get("c", trained_models["full"], tiny_model_dir)
    assert cache.loaded() == ["a", "c"], "b, the least recently used, made room"
    assert cache.resident_bytes() <= cache.max_bytes
    assert (cache.hits, cache.misses, cache.evictions) == (1, 3, 1), "a found loaded; a, b, c loaded; b evicted"
    small = ModelCache(max_models=10, max_bytes=1)
    small.get("a", trained_models["full"], tiny_model_dir)
    assert small.loaded() == ["a"], "a model larger than the budget is still served, alone"


def test_a_failed_check_loads_nothing(trained_models, tiny_model_dir):
    cache = ModelCache(max_models=10, max_bytes=10**12)

    def refuse() -> None:
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum"):
        cache.get("adapters", trained_models["adapters"], tiny_model_dir, verify=refuse)
    assert cache.loaded() == [] and cache.resident_bytes() == 0


def test_int8_quantization_shrinks_the_encoder_and_keeps_predictions_close(trained_models, tiny_model_dir):
    plain = ModelCache(max_models=10, max_bytes=10**12)
    quantized = ModelCache(max_models=10, max_bytes=10**12, options=ServingOptions(quantize="int8"))
    int8_linears = []
    for kind in ("full", "adapters"):
        exact = plain.get(kind, trained_models[kind], tiny_model_dir)
        small = quantized.get(kind, trained_models[kind], tiny_model_dir)
        modules = list(small.deployment.encoder.modules())
        int8_linears.append(sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules))
        [expected] = exact.deployment.predict([(kind, TEXTS)], 64)
        [got] = small.deployment.predict([(kind, TEXTS)], 64)
        assert (probabilities(got) - probabilities(expected)).abs().max() < 0.05
    full_encoder = plain.get("full", trained_models["full"], tiny_model_dir).deployment.encoder
    assert int8_linears == [sum(isinstance(m, torch.nn.Linear) for m in full_encoder.modules())] * 2
    # The tiny model's bytes are mostly its embeddings (not quantized): compare the layers.
    int8_layers = quantized.get("full", trained_models["full"], tiny_model_dir).deployment.encoder.encoder
    assert module_bytes(int8_layers) < module_bytes(full_encoder.encoder) * 0.4, "int8 weights: about a quarter"

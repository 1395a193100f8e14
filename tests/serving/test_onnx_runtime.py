"""The ONNX Runtime backend serves what torch serves: a model with all its weights as one fused
graph (int8 with quantization), models that share a base encoder left on torch."""

from pathlib import Path

import onnx
import pytest
import torch

from app.serving.cache import ModelCache
from app.serving.deployments import Deployment, ServingOptions
from app.serving.onnx_runtime import OnnxDeployment

TEXTS = ["the movie was great", "awful plot", "really quite long and terrible acting", "lovely", "ok"]


def scores(cache: ModelCache, kind: str, directory: Path, base: Path) -> torch.Tensor:
    served = cache.get(kind, directory, base)
    [predictions] = served.deployment.predict([(kind, TEXTS)], max_batch=2)  # three passes, padded apart
    return torch.tensor([list(p["scores"].values()) for p in predictions])


def test_a_full_model_in_onnx_runtime_gives_torchs_probabilities(trained_models, tiny_model_dir):
    torch_cache = ModelCache(10, 10**12)
    onnx_cache = ModelCache(10, 10**12, ServingOptions(backend="onnx"))
    served = onnx_cache.get("full", trained_models["full"], tiny_model_dir)
    assert isinstance(served.deployment, OnnxDeployment)
    expected = scores(torch_cache, "full", trained_models["full"], tiny_model_dir)
    got = scores(onnx_cache, "full", trained_models["full"], tiny_model_dir)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_int8_onnx_runtime_keeps_the_labels_and_shrinks_the_graph(trained_models, tiny_model_dir):
    exact = ModelCache(10, 10**12, ServingOptions(backend="onnx"))
    small = ModelCache(10, 10**12, ServingOptions(backend="onnx", quantize="int8"))
    expected = scores(exact, "full", trained_models["full"], tiny_model_dir)
    got = scores(small, "full", trained_models["full"], tiny_model_dir)
    assert (got - expected).abs().max() < 0.05
    graph = small.get("full", trained_models["full"], tiny_model_dir).deployment.graph
    ops = {node.op_type for node in onnx.load(graph).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, ops


@pytest.mark.parametrize("kind", ["adapters", "lora", "head_only"])
def test_models_sharing_a_base_stay_on_the_torch_deployment(trained_models, tiny_model_dir, kind):
    cache = ModelCache(10, 10**12, ServingOptions(backend="onnx"))
    served = cache.get(kind, trained_models[kind], tiny_model_dir)
    assert type(served.deployment) is Deployment


def test_unloading_an_onnx_model_removes_its_graph(trained_models, tiny_model_dir):
    cache = ModelCache(10, 10**12, ServingOptions(backend="onnx"))
    folder = cache.get("full", trained_models["full"], tiny_model_dir).deployment.folder
    assert (folder / "model.onnx").exists() and cache.resident_bytes() > 0
    cache.evict("full")
    assert not folder.exists() and cache.resident_bytes() == 0

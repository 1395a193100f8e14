"""Exports that run without Thaw: the Hugging Face folder loads with AutoModelForSequenceClassification
and gives the probabilities Thaw gives (1e-5), the ONNX graph does in onnxruntime (1e-4), for
fine-tuned, adapter, LoRA and head-only models (tiny BERT) and a LoRA model of every other supported
family, and an ensemble exports as its members and a manifest whose mean is the ensemble's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from app.adaptation import TaskData, adapt, load_classifier
from app.adaptation.architectures import supported
from app.adaptation.ensemble import load_model
from app.adaptation.exports import MANIFEST, export_model
from app.adaptation.exports.hf import export_hf
from app.adaptation.exports.onnx import export_onnx
from app.adaptation.job import save_result
from tests.adaptation.helpers import job
from tests.utils.data import sentiment
from tests.utils.tiny_model import build_tiny
from tests.utils.trained import train_and_save

KINDS = {
    "full": {"recipe": "fine_tuning", "model": {"pooling": "scalar_mix"}},
    "adapters": {"recipe": "adapters", "model": {"adapters": {"size": 8}}},
    "lora": {"recipe": "lora", "model": {"lora": {"r": 4, "alpha": 8}}},
    "head_only": {"recipe": "feature_extraction", "model": {"head": "mlp", "head_hidden": 16, "pooling": "max"}},
}
# Longer and more texts than the trace's example inputs: the graph's batch and token axes are dynamic.
TEXTS = ["the movie was great", "awful plot", "really quite long and terrible acting, and the plot too", "lovely"]


def thaw_probabilities(directory: Path, base: Path) -> torch.Tensor:
    return load_classifier(directory, base).probabilities(TEXTS)


def hf_probabilities(folder: Path) -> torch.Tensor:
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    encoded = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**encoded).logits.softmax(dim=-1)


def onnx_probabilities(folder: Path) -> torch.Tensor:
    card = json.loads((folder / "thaw.json").read_text())
    encoded = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="np")
    feeds = {name: encoded[name].astype(np.int64) for name in card["inputs"]}
    (scores,) = onnxruntime.InferenceSession(str(folder / "model.onnx")).run(["probabilities"], feeds)
    return torch.from_numpy(scores)


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("to-export")
    return {kind: train_and_save(tiny_model_dir, o, root / kind, n) for n, (kind, o) in enumerate(KINDS.items())}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_hf_folder_loads_with_the_auto_class_and_gives_thaws_probabilities(trained, tiny_model_dir, kind, tmp_path):
    export_hf(trained[kind], tiny_model_dir, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["ThawForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert not [name for name in weights if "lora_" in name], "LoRA is merged into the weights it changes"
    assert any(".adapter." in name for name in weights) == (kind == "adapters")
    torch.testing.assert_close(hf_probabilities(tmp_path / "hf"), thaw_probabilities(trained[kind], tiny_model_dir),
                               atol=1e-5, rtol=0)  # fmt: skip


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_onnx_graph_runs_in_onnxruntime_and_gives_thaws_probabilities(trained, tiny_model_dir, kind, tmp_path):
    export_onnx(trained[kind], tiny_model_dir, tmp_path / "onnx")
    card = json.loads((tmp_path / "onnx" / "thaw.json").read_text())
    assert card["labels"] == ["negative", "positive"] and card["inputs"][:2] == ["input_ids", "attention_mask"]
    torch.testing.assert_close(onnx_probabilities(tmp_path / "onnx"), thaw_probabilities(trained[kind], tiny_model_dir),
                               atol=1e-4, rtol=0)  # fmt: skip


@pytest.mark.parametrize("family", [f for f in supported() if f != "bert"])
def test_every_family_exports_to_both_formats(family, tmp_path):
    base = build_tiny(family, tmp_path / "base")
    directory = train_and_save(base, KINDS["lora"], tmp_path / "model")
    expected = thaw_probabilities(directory, base)
    export_hf(directory, base, tmp_path / "hf")
    export_onnx(directory, base, tmp_path / "onnx")
    torch.testing.assert_close(hf_probabilities(tmp_path / "hf"), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(onnx_probabilities(tmp_path / "onnx"), expected, atol=1e-4, rtol=0)


def test_an_ensemble_exports_its_members_and_a_manifest_whose_mean_is_the_ensemble(tiny_model_dir, tmp_path):
    spec = job(ensemble={"members": [{"recipe": "feature_extraction"}, {"recipe": "lora"}]}, training={"epochs": 1})
    save_result(adapt(spec, TaskData(sentiment(32)), tiny_model_dir), spec, tmp_path / "ensemble")
    export_model(export_hf, tmp_path / "ensemble", lambda base: tiny_model_dir, tmp_path / "hf")
    manifest = json.loads((tmp_path / "hf" / MANIFEST).read_text())
    assert manifest["kind"] == "ensemble" and [m["recipe"] for m in manifest["members"]] == [
        "feature_extraction",
        "lora",
    ]
    mean = torch.stack([hf_probabilities(tmp_path / "hf" / m["path"]) for m in manifest["members"]]).mean(dim=0)
    ensemble = load_model(tmp_path / "ensemble", lambda base: tiny_model_dir)
    torch.testing.assert_close(mean, ensemble.probabilities(TEXTS), atol=1e-5, rtol=0)

"""Trained tiny models of every serving kind: full weights, adapters, LoRA, head only."""

from pathlib import Path

import pytest
import torch

from app.adaptation import TaskData, adapt
from app.adaptation.job import save_result
from tests.adaptation.helpers import job
from tests.utils.data import sentiment

KINDS = {
    "full": {"recipe": "fine_tuning"},
    "adapters": {"recipe": "adapters", "model": {"adapters": {"placement": "houlsby", "size": 8}}},
    "lora": {"recipe": "lora", "model": {"lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}}},
    "head_only": {"recipe": "feature_extraction", "model": {"pooling": "max"}},
}


@pytest.fixture(scope="session")
def trained_models(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved model per kind. The adapter and LoRA weights are then set to random values, so that
    each model's own modules change the base's outputs far more than a short training would."""
    root = tmp_path_factory.mktemp("served")
    models = {}
    for number, (kind, overrides) in enumerate(KINDS.items()):
        spec = job(**overrides, training={"epochs": 1, "seed": number})
        result = adapt(spec, TaskData(sentiment(48, seed=number)), tiny_model_dir)
        generator = torch.Generator().manual_seed(number)
        with torch.no_grad():
            for name, parameter in result.model.named_parameters():
                if ".adapter.up." in name or ".lora_B." in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        models[kind] = root / kind
        save_result(result, spec, models[kind])
    return models

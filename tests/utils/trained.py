"""Small trained models saved as a job saves them, for tests of what reads artifacts (serving, export)."""

from __future__ import annotations

from pathlib import Path

import torch

from app.adaptation import TaskData, adapt
from app.adaptation.job import save_result
from tests.adaptation.helpers import job
from tests.utils.data import sentiment


def train_and_save(base: Path, overrides: dict, directory: Path, seed: int = 0, rows: int = 32) -> Path:
    """A one-epoch model of `base` with the spec `overrides`, saved in `directory`. Its adapter and
    LoRA up-projections are then set to random values, so that they change the base's outputs far
    more than a short training would (a reader that dropped one would show it)."""
    spec = job(**overrides, training={"epochs": 1, "seed": seed})
    result = adapt(spec, TaskData(sentiment(rows, seed=seed)), base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in result.model.named_parameters():
            if ".adapter.up." in name or ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    save_result(result, spec, directory)
    return directory

"""Trained tiny models of every serving kind: full weights, adapters, LoRA, head only."""

from pathlib import Path

import pytest

from tests.utils.trained import train_and_save

KINDS = {
    "full": {"recipe": "fine_tuning"},
    "adapters": {"recipe": "adapters", "model": {"adapters": {"placement": "houlsby", "size": 8}}},
    "lora": {"recipe": "lora", "model": {"lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}}},
    "head_only": {"recipe": "feature_extraction", "model": {"pooling": "max"}},
}


@pytest.fixture(scope="session")
def trained_models(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved model per kind (adapter and LoRA weights randomised: tests/utils/trained.py)."""
    root = tmp_path_factory.mktemp("served")
    return {
        kind: train_and_save(tiny_model_dir, o, root / kind, n, rows=48) for n, (kind, o) in enumerate(KINDS.items())
    }

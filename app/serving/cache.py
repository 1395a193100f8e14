"""Loaded models under a memory budget, least recently used evicted first.

Models that share a base model share its resident encoder (deployments.py), so the budget counts
that encoder once; when its last model is evicted, the encoder goes too. An ensemble's members are
loaded as models of their own (ensembles.py): the budget counts each of them, toward the bytes and
toward `max_models`, and the ensemble is loaded, used and evicted as one.

It counts its hits (a lookup that found the model loaded), misses (a lookup that had to load it)
and evictions (models unloaded to fit the budget), for the API's metrics.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from app.adaptation.artifact import read_card
from app.serving.deployments import (
    Deployment,
    NotShareable,
    ServingOptions,
    load_base,
    load_private,
    read_member,
    shares_base,
)
from app.serving.ensembles import Ensemble, Part, member_directory
from app.serving.onnx_runtime import load_onnx

T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    """Where a loaded model runs: what serves its requests (its deployment, or for an ensemble the
    `Ensemble` over its members' deployments) and its key there."""

    deployment: Deployment | Ensemble
    key: str

    @property
    def parts(self) -> list[Part]:
        """The models it keeps on deployments: itself, or an ensemble's members."""
        if isinstance(self.deployment, Ensemble):
            return self.deployment.parts
        return [(self.deployment, self.key)]


class ModelCache:
    def __init__(self, max_models: int, max_bytes: int, options: ServingOptions | None = None) -> None:
        self.max_models, self.max_bytes = max_models, max_bytes
        self.options = options or ServingOptions()
        self._models: OrderedDict[str, Served] = OrderedDict()  # least recently used first
        self._deployments: dict[str, Deployment] = {}  # "model:<id>" or "base:<path>"
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}  # one loader per model or base at a time
        self.hits = self.misses = self.evictions = 0  # written under _lock

    def get(
        self,
        model_id: str,
        directory: Path,
        base_model_path: Path,
        verify: Callable[[], None] | None = None,
        base_models: Callable[[str], Path] | None = None,
    ) -> Served:
        """The loaded model; `verify` runs before a model is loaded (its checksums) and raises to refuse it.
        `base_model_path` is the folder of the model's base model; `base_models` maps any catalog id
        to its folder, for ensemble members on another base (without it, only the model's own base)."""
        served = self._hit(model_id)
        if served is not None:
            return served
        with self._loader(model_id):
            served = self._hit(model_id)
            if served is not None:
                return served
            with self._lock:
                self.misses += 1
            if verify is not None:
                verify()
            served = self._load(model_id, directory, base_model_path, base_models)
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
                self.hits += 1
            return served

    def _loader(self, key: str) -> threading.Lock:
        with self._lock:
            return self._loading.setdefault(key, threading.Lock())

    def _load(
        self,
        model_id: str,
        directory: Path,
        base_model_path: Path,
        base_models: Callable[[str], Path] | None = None,
    ) -> Served:
        card = read_card(directory)
        if card.get("kind") == "ensemble":
            return self._load_ensemble(model_id, directory, card, base_model_path, base_models)
        return self._load_single(model_id, directory, base_model_path)

    def _load_ensemble(
        self,
        model_id: str,
        directory: Path,
        card: dict,
        base_model_path: Path,
        base_models: Callable[[str], Path] | None,
    ) -> Served:
        def base_of(member: str) -> Path:
            if base_models is not None:
                return base_models(member)
            if member == card["base_model"]:
                return base_model_path
            raise ValueError(f"ensemble {model_id!r}: a member's base model {member!r} was not given")

        members: list[Served] = []
        try:
            for index, entry in enumerate(card["members"]):
                folder = member_directory(directory, entry["path"])
                base = base_of(entry["base_model"]) if shares_base(folder) else base_model_path  # unused when full
                members.append(self._load_single(f"{model_id}/member-{index}", folder, base))
            parts = [(member.deployment, member.key) for member in members]
            multi_label = card.get("task") == "multi_label"
            ensemble = Ensemble(model_id, card["labels"], multi_label, card.get("threshold"), parts)
        except BaseException:  # a member that did not load: the ones that did go again
            with self._lock:
                for member in members:
                    self._release(member.deployment, member.key)
            raise
        return Served(ensemble, model_id)

    def _load_single(self, model_id: str, directory: Path, base_model_path: Path) -> Served:
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
        load = load_onnx if self.options.backend == "onnx" else load_private
        deployment = load(model_id, directory, base_model_path, self.options)
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
        for deployment, key in served.parts:
            self._release(deployment, key)

    def _release(self, deployment: Deployment, key: str) -> None:
        deployment.remove(key)
        self._forget_if_unused(deployment)

    def _forget_if_unused(self, deployment: Deployment) -> None:
        if not deployment.members:  # a base no model uses, or a private model's encoder
            for key, known in list(self._deployments.items()):
                if known is deployment:
                    del self._deployments[key]

    def _resident_bytes(self) -> int:
        return sum(d.nbytes + sum(m.nbytes for m in d.members.values()) for d in self._deployments.values())

    def _model_count(self) -> int:
        """Models loaded, each member of an ensemble counted."""
        return sum(len(served.parts) for served in self._models.values())

    def _evict_over_budget(self, keep: str) -> None:
        while len(self._models) > 1 and (
            self._model_count() > self.max_models or self._resident_bytes() > self.max_bytes
        ):
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            self._drop(oldest)
            self.evictions += 1

"""Serving, assembled: the model cache and the micro-batcher that every predict request goes through."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from app.adaptation import LoadedClassifier
from app.adaptation.data import Text
from app.config import Settings
from app.serving.batcher import BatchObserver, MicroBatcher
from app.serving.cache import ModelCache
from app.serving.deployments import ServingOptions
from app.serving.predictions import format_predictions

if TYPE_CHECKING:
    from app.adaptation.ensemble import LoadedEnsemble


class Serving:
    def __init__(self, settings: Settings, on_batch: BatchObserver | None = None) -> None:
        """`on_batch(texts, requests)` hears of every forward pass (MicroBatcher)."""
        options = ServingOptions(
            quantize=settings.serving_quantize,
            precision=settings.serving_precision,
            backend=settings.serving_backend,
            threads=settings.torch_threads,
        )
        self.cache = ModelCache(settings.model_cache_size, settings.model_cache_bytes, options)
        self.batcher = MicroBatcher(
            settings.serving_max_wait_ms / 1000, settings.serving_max_batch, settings.serving_queue_limit, on_batch
        )
        self.batcher.call(lambda: set_threads(settings.torch_threads))  # a per-thread setting

    def load(
        self,
        model_id: str,
        directory: Path,
        base_model_path: Path,
        verify: Callable[[], None],
        base_models: Callable[[str], Path] | None = None,
    ) -> Future:
        """The loaded model (a future of `Served`), loaded on the inference thread if need be;
        `base_models` finds the base models of an ensemble's members (ModelCache.get)."""
        return self.batcher.call(lambda: self.cache.get(model_id, directory, base_model_path, verify, base_models))

    def close(self) -> None:
        self.batcher.close()


def set_threads(threads: int) -> None:
    """Intra-op threads for the forward passes: every core this process may use unless told otherwise."""
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))


def predict(loaded: LoadedClassifier | LoadedEnsemble, texts: Sequence[Text]) -> list[dict[str, Any]]:
    """Predictions of one loaded model or ensemble (ensemble.load_model), outside the service (no
    cache, no batching)."""
    return format_predictions(loaded.labels, loaded.probabilities(texts), loaded.multi_label, loaded.threshold)

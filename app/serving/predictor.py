"""Load trained models on demand (LRU-bounded) and predict labels with their probabilities."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.adaptation import LoadedClassifier, load_classifier, predict_proba
from app.adaptation.data import Text


class ModelCache:
    """At most `capacity` loaded models; the least recently used is dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedClassifier] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, model_id: str, directory: Path, base_model_path: Path, verify: Callable[[], None] | None = None
    ) -> LoadedClassifier:
        """The loaded model; one that stores only its own weights is loaded over its base model.
        `verify` runs before a model is loaded (its checksums), and raises to refuse it."""
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            if verify is not None:
                verify()
            loaded = load_classifier(directory, base_model_path)
            self._models[model_id] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded

    def evict(self, model_id: str) -> None:
        with self._lock:
            self._models.pop(model_id, None)


def predict(loaded: LoadedClassifier, texts: Sequence[Text]) -> list[dict[str, Any]]:
    """For each text: the top label with its score and every label's probability; a multi-label
    model adds `labels`, those above its threshold."""
    probabilities = predict_proba(
        loaded.model, loaded.tokenizer, texts, loaded.max_length, multi_label=loaded.multi_label
    )
    predictions = []
    for row in probabilities.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        prediction: dict[str, Any] = {
            "label": loaded.labels[best],
            "score": row[best],
            "scores": dict(zip(loaded.labels, row, strict=True)),
        }
        if loaded.multi_label:
            threshold = loaded.threshold if loaded.threshold is not None else 0.5
            prediction["labels"] = [label for label, p in zip(loaded.labels, row, strict=True) if p > threshold]
        predictions.append(prediction)
    return predictions

"""The adaptation engine: a library (torch, transformers) with no web, queue or database imports.

Its names load on first use (PEP 562), so that importing one torch-free part of the engine (the
registries and units that the job spec reads, app/adaptation/registry.py) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AdaptationResult": "app.adaptation.result",
    "InvalidTaskData": "app.adaptation.labels",
    "adapt": "app.adaptation.job",
    "LoadedClassifier": "app.adaptation.artifact",
    "load_classifier": "app.adaptation.artifact",
    "save_classifier": "app.adaptation.artifact",
    "Callbacks": "app.adaptation.callbacks",
    "Cancelled": "app.adaptation.callbacks",
    "Paused": "app.adaptation.callbacks",
    "Progress": "app.adaptation.callbacks",
    "SilentCallbacks": "app.adaptation.callbacks",
    "Checkpoints": "app.adaptation.checkpoint",
    "LabeledTexts": "app.adaptation.data",
    "TaskData": "app.adaptation.data",
    "predict_proba": "app.adaptation.inference",
}

__all__ = [
    "AdaptationResult",
    "Callbacks",
    "Cancelled",
    "Checkpoints",
    "InvalidTaskData",
    "LabeledTexts",
    "LoadedClassifier",
    "Paused",
    "Progress",
    "SilentCallbacks",
    "TaskData",
    "adapt",
    "load_classifier",
    "predict_proba",
    "save_classifier",
]

if TYPE_CHECKING:
    from app.adaptation.artifact import LoadedClassifier, load_classifier, save_classifier
    from app.adaptation.callbacks import Callbacks, Cancelled, Paused, Progress, SilentCallbacks
    from app.adaptation.checkpoint import Checkpoints
    from app.adaptation.data import LabeledTexts, TaskData
    from app.adaptation.inference import predict_proba
    from app.adaptation.job import adapt
    from app.adaptation.labels import InvalidTaskData
    from app.adaptation.result import AdaptationResult


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value

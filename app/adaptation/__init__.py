"""The adaptation engine: a library (torch, transformers) with no web, queue or database imports."""

from app.adaptation.adapt import AdaptationResult, InvalidTaskData, adapt
from app.adaptation.artifact import LoadedClassifier, load_classifier, save_classifier
from app.adaptation.callbacks import Callbacks, Cancelled, Paused, Progress, SilentCallbacks
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.data import LabeledTexts, TaskData
from app.adaptation.inference import predict_proba

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

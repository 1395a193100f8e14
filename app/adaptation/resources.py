"""Inputs beyond the task data that some options need: the datasets and trained models a spec
references (JobSpec.dataset_refs / model_refs), and the base models of ensemble members. Whoever
runs the engine resolves them (the worker reads them from its stores; a test or notebook builds
them by hand); the options read them here by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.adaptation.data import LabeledTexts, Text

if TYPE_CHECKING:
    import torch

    from app.adaptation.model import TextClassifier


class MissingResource(KeyError):
    """The spec names an input that whoever ran the engine did not provide."""


class Teacher(Protocol):
    """A trained model that labels text: a single model (LoadedClassifier) or an ensemble."""

    labels: list[str]

    def probabilities(self, texts: Sequence[Text], temperature: float = 1.0) -> torch.Tensor: ...


def lead_member(teacher: Teacher) -> Any:
    """The single model that speaks for a teacher where one set of weights is needed (a student's
    start, its layers to match): the teacher itself, or an ensemble's first member (a
    LoadedClassifier: .model, .tokenizer)."""
    members = getattr(teacher, "members", None)
    return members[0] if members else teacher


@dataclass
class Resources:
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # dataset id -> rows
    models: dict[str, Teacher] = field(default_factory=dict)  # model id -> the loaded model
    base_models: dict[str, Path] = field(default_factory=dict)  # catalog id -> directory
    # Where a frozen encoder's features persist across jobs (features.py); None: this process's memory only.
    feature_cache: Path | None = None

    def rows(self, dataset_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        if dataset_id not in self.tables:
            raise MissingResource(f"dataset {dataset_id!r} was not provided to the engine")
        rows = self.tables[dataset_id]
        return rows if limit is None else rows[:limit]

    def texts_of(self, dataset_id: str, text_field: str, limit: int | None = None) -> list[str]:
        rows = self.rows(dataset_id, limit)
        missing = next((i for i, row in enumerate(rows) if text_field not in row), None)
        if missing is not None:
            raise ValueError(f"dataset {dataset_id!r} has no column {text_field!r} (row {missing + 1})")
        return [row[text_field] for row in rows]

    def labeled(self, dataset_id: str, text_field: str, label_field: str, limit: int | None = None) -> LabeledTexts:
        """One label per text (auxiliary and intermediate tasks are single-label)."""
        rows = self.rows(dataset_id, limit)
        unlabeled = next((i for i, row in enumerate(rows) if label_field not in row), None)
        if unlabeled is not None:
            raise ValueError(f"dataset {dataset_id!r} has no label column {label_field!r} (row {unlabeled + 1})")
        labels = [v if isinstance(v, str) else "|".join(v) for v in (row[label_field] for row in rows)]
        return LabeledTexts(self.texts_of(dataset_id, text_field, limit), labels)

    def teacher(self, model_id: str) -> Teacher:
        if model_id not in self.models:
            raise MissingResource(f"model {model_id!r} was not provided to the engine")
        return self.models[model_id]

    def classifier(self, model_id: str) -> TextClassifier:
        """The classifier module of a single trained model (a distillation source)."""
        model = self.teacher(model_id)
        if not hasattr(model, "model"):
            raise MissingResource(f"model {model_id!r} is an ensemble; a single model is needed here")
        return model.model  # type: ignore[attr-defined]

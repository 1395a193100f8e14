"""The main task's labels and its validation split."""

from __future__ import annotations

from app.adaptation.data import LabeledTexts, TaskData, stratified_split
from app.adaptation.tasks import label_names
from app.schemas.spec import JobSpec


class InvalidTaskData(ValueError):
    """The data cannot train this task (one class, labels unseen in training, ...)."""


def split_validation(spec: JobSpec, data: TaskData) -> tuple[LabeledTexts, LabeledTexts | None, bool]:
    """(train, validation, held_out): without a validation set, hold out a stratified share of train,
    unless that share is 0 (every row trains, there is no validation)."""
    if data.validation is not None or spec.data.validation_fraction == 0:
        return data.train, data.validation, False
    train, validation = stratified_split(data.train, spec.data.validation_fraction, spec.training.seed)
    return train, validation, True


def check_labels(task: str, train: LabeledTexts, others: dict[str, LabeledTexts | None]) -> list[str]:
    labels = label_names(task, train.labels)
    if len(labels) < 2:
        raise InvalidTaskData(f"the training data has only one class ({labels[0]!r}); need at least two")
    for name, data in others.items():
        unseen = sorted(set(label_names(task, data.labels)) - set(labels)) if data is not None else []
        if unseen:
            raise InvalidTaskData(f"{name} has labels that train does not: {', '.join(map(repr, unseen[:10]))}")
    return labels

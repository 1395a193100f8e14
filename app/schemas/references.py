"""What a job spec names besides its own settings: datasets and trained models, each with what its
reader needs of it. An option that reads one declares it (`references`), so that the service's
submission checks, the worker's loader and the engine all work from `JobSpec.dataset_refs()` and
`JobSpec.model_refs()` and no list of options is kept anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from app.schemas.spec import JobSpec


@dataclass(frozen=True)
class DatasetRef:
    """A dataset that the job reads, and the columns it reads of it."""

    path: str  # the spec field that names it, e.g. "optimization.regularizers.0.fisher_data"
    dataset_id: str
    text_fields: tuple[str, ...]
    label_field: str | None = None  # read as labeled data; None: only its text
    labels_for: str = "the task"  # what needs the labels, for error messages
    limit: int | None = None  # only its first `limit` rows are read
    min_classes: int = 0  # the labels must have at least this many classes (in those rows)
    task_data: bool = False  # the job's own train, validation or test set (read as the task's data)


@dataclass(frozen=True)
class ModelRef:
    """A trained model of the tenant's that the job reads, and what it must share with the job."""

    path: str
    model_id: str
    role: Literal["source", "teacher"]  # source: a single model with the job's base model and labels;
    # teacher: a single_label model or ensemble whose labels include every training label
    base_model: str  # the base model of the job (or ensemble member) that reads it


Reference = DatasetRef | ModelRef


@runtime_checkable
class Referencing(Protocol):
    """A part of the spec that names datasets or models; paths are relative to the part."""

    def references(self, job: JobSpec) -> Iterator[Reference]: ...


def under(prefix: str, references: Iterator[Reference]) -> Iterator[Reference]:
    """The references of a part of the spec, with their paths made the whole spec's."""
    for reference in references:
        yield replace(reference, path=f"{prefix}.{reference.path}")

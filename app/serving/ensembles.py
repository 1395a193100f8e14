"""Ensembles as served: one model whose probabilities are the mean of its members'.

Each member of an ensemble (app/adaptation/ensemble.py) is loaded as a single model would be, under
a key of its own (`<model id>/member-<i>`): a fully fine-tuned member is a deployment of its own, a
member that trained only its own weights attaches to the resident deployment of its base model,
shared with the ensemble's other members on that base and with any single model on it. The cache
(cache.py) counts and evicts the members with the ensemble. To the batcher an `Ensemble` is what
serves a batch, as a `Deployment` is: `predict` runs each deployment its members sit on once for
every request of the batch (members on one base share its forward passes) and averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from app.adaptation.data import Text
from app.serving.deployments import Deployment
from app.serving.errors import Unloaded
from app.serving.predictions import format_predictions

Part = tuple[Deployment, str]  # a member: the deployment it runs on, its key there


class Ensemble:
    def __init__(
        self, key: str, labels: list[str], multi_label: bool, threshold: float | None, parts: Sequence[Part]
    ) -> None:
        if not parts:
            raise ValueError(f"ensemble {key!r} has no members")
        self.key, self.labels, self.multi_label, self.threshold = key, labels, multi_label, threshold
        self.parts = list(parts)
        self._columns: dict[str, list[int]] = {}  # member key -> its column of each ensemble label
        self._groups: dict[int, tuple[Deployment, list[str]]] = {}  # deployment -> its members' keys
        for index, (deployment, member_key) in enumerate(self.parts):
            member = deployment.members[member_key]
            if sorted(member.labels) != sorted(labels) or member.multi_label != multi_label:
                raise ValueError(
                    f"ensemble {key!r}: member {index + 1} ({member.labels}, multi_label={member.multi_label}) "
                    f"does not fit the ensemble ({labels}, multi_label={multi_label})"
                )
            self._columns[member_key] = [member.labels.index(label) for label in labels]
            self._groups.setdefault(id(deployment), (deployment, []))[1].append(member_key)

    @torch.inference_mode()
    def predict(self, requests: Sequence[tuple[str, Sequence[Text]]], max_batch: int) -> list[list[dict[str, Any]]]:
        """Predictions for each (ensemble key, texts) request, in order."""
        stray = sorted({key for key, _ in requests if key != self.key})
        if stray:
            raise Unloaded(f"model {stray[0]!r} is not this ensemble ({self.key!r})")
        totals = [torch.zeros(len(texts), len(self.labels)) for _, texts in requests]
        for deployment, member_keys in self._groups.values():
            batch = [(member_key, texts) for member_key in member_keys for _, texts in requests]
            try:
                results = deployment.probabilities(batch, max_batch)
            except Unloaded:  # the ensemble was evicted: its members went with it
                raise Unloaded(f"model {self.key!r} was unloaded") from None
            for number, ((member_key, _), probabilities) in enumerate(zip(batch, results, strict=True)):
                totals[number % len(requests)] += probabilities[:, self._columns[member_key]]
        return [
            format_predictions(self.labels, total / len(self.parts), self.multi_label, self.threshold)
            for total in totals
        ]


def member_directory(directory: Path, path: str) -> Path:
    """A member's folder, which must lie inside the ensemble's."""
    member = (directory / path).resolve()
    if not member.is_relative_to(directory.resolve()):
        raise ValueError(f"{directory}: member path {path!r} leaves the ensemble's folder")
    return member

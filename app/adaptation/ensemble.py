"""Ensembles (`ensemble`): members that differ by seed, hyper-parameters, recipe or base model,
trained one after another as one job and served as one model whose probabilities are the mean of
the members' (Dietterich 2000). On disk an ensemble is a folder of member artifacts:

    thaw.json           kind "ensemble", labels, each member's folder, base model and metrics
    members/<i>/        a member's artifact, as a single model's (artifact.py)

A finished member is kept with the job's checkpoints, so a resumed job trains only the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.adaptation.artifact import CARD, LoadedClassifier, load_classifier, read_card
from app.adaptation.callbacks import Callbacks, Labelled
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.data import TaskData, Text
from app.adaptation.labels import check_labels, split_validation
from app.adaptation.resources import MissingResource, Resources
from app.adaptation.result import AdaptationResult
from app.adaptation.single import adapt_single, save_single
from app.adaptation.tasks import TASKS
from app.schemas.spec import JobSpec

RESULT = "result.json"  # a finished member's numbers, beside its artifact in the checkpoints


@dataclass
class LoadedEnsemble:
    members: list[LoadedClassifier]
    labels: list[str]
    multi_label: bool = False
    threshold: float | None = None

    def probabilities(self, texts: Sequence[Text], temperature: float = 1.0) -> torch.Tensor:
        """The mean of the members' probabilities (each at `temperature`)."""
        return mean_probabilities([member.probabilities(texts, temperature) for member in self.members])


def mean_probabilities(each: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(each).mean(dim=0)


def is_ensemble(directory: Path) -> bool:
    return read_card(directory).get("kind") == "ensemble"


def load_model(directory: Path, base_model_path: Callable[[str], Path]) -> LoadedClassifier | LoadedEnsemble:
    """A saved model, single or ensemble; `base_model_path` maps a catalog id to its folder."""
    card = read_card(directory)
    if card.get("kind") != "ensemble":
        return load_classifier(directory, base_model_path(card["base_model"]))
    members = []
    for member in card["members"]:
        folder = directory / member["path"]
        own = read_card(folder)["weights"] == "own"  # only a member that stored its own weights needs its base
        members.append(load_classifier(folder, base_model_path(member["base_model"]) if own else None))
    return LoadedEnsemble(members, card["labels"], card.get("task") == "multi_label", card.get("threshold"))


def adapt_ensemble(
    spec: JobSpec,
    data: TaskData,
    base_model_path: Path,
    callbacks: Callbacks,
    progress_interval: float,
    resources: Resources,
    checkpoints: Checkpoints | None,
) -> AdaptationResult:
    """Train every member on the same split (so their validation metrics compare), then measure the
    mean of their probabilities. Members run one after another: on a CPU worker a member already
    uses every core, and a worker owns one GPU."""
    assert spec.ensemble is not None
    train, validation, held_out = split_validation(spec, data)
    labels = check_labels(spec.task, train, {"validation": validation, "test": data.test})
    shared = TaskData(train, validation, data.test)
    members: list[tuple[JobSpec, AdaptationResult]] = []
    started = time.monotonic()
    count = len(spec.ensemble.members)
    for index, member in enumerate(spec.ensemble.members):
        name = f"member-{index}"
        kept = checkpoints.finished_dir(name) if checkpoints is not None else None
        result = _finished_member(kept, spec, base_model_path, resources) if kept is not None else None
        if result is None:
            path = _base_of(member.base_model, spec, base_model_path, resources)
            phase = checkpoints.phase(name) if checkpoints is not None else None
            result = adapt_single(
                member,
                shared,
                path,
                Labelled(callbacks, f"member {index + 1}/{count}", {"member": index + 1}),
                progress_interval,
                resources,
                phase,
            )
            if kept is not None:
                _keep_member(kept, member, result)
        members.append((member, result))
        if result.labels != labels:
            raise ValueError(f"member {index + 1} learned labels {result.labels}, the ensemble {labels}")
    return _ensemble_result(spec, labels, members, validation, held_out, data, time.monotonic() - started)


def _ensemble_result(spec, labels, members, validation, held_out, data, seconds) -> AdaptationResult:
    task = TASKS.get(spec.task)(labels, spec.threshold)
    metrics: dict[str, Any] = {"validation_held_out_from_train": held_out, "members": []}
    if validation is not None:
        probabilities = _mean_over(members, validation.texts)
        task.fit_threshold(validation.labels, probabilities)
        metrics.update(task.report(validation.labels, probabilities))
    if data.test is not None:
        metrics["test"] = task.report(data.test.labels, _mean_over(members, data.test.texts))
    for index, (member, result) in enumerate(members):
        summary = {k: result.metrics[k] for k in ("accuracy", "macro_f1", "micro_f1") if k in result.metrics}
        if "test" in result.metrics:
            summary["test"] = {k: result.metrics["test"][k] for k in ("accuracy", "macro_f1")}
        metrics["members"].append(
            {
                "member": index + 1,
                "recipe": member.recipe,
                "base_model": member.base_model,
                "seed": member.training.seed,
                "train_seconds": result.train_seconds,
                **summary,
            }
        )
    return AdaptationResult(
        None,
        None,
        labels,
        metrics,
        task.threshold,
        sum(r.trainable_params for _, r in members),
        sum(r.total_params for _, r in members),
        seconds,
        max(r.peak_memory_bytes for _, r in members),
        members,
    )


def _mean_over(members: list[tuple[JobSpec, AdaptationResult]], texts: Sequence[Text]) -> torch.Tensor:
    each = []
    for member, result in members:
        loaded = LoadedClassifier(
            result.model,
            result.tokenizer,
            result.labels,
            member.training.max_length,
            member.task == "multi_label",
            result.threshold,
        )
        each.append(loaded.probabilities(texts))
    return mean_probabilities(each)


def _keep_member(directory: Path, member: JobSpec, result: AdaptationResult) -> None:
    """A finished member's model and numbers, so that a resumed job need not train it again."""
    save_single(result, member, directory)
    numbers = {
        k: getattr(result, k)
        for k in ("metrics", "threshold", "trainable_params", "total_params", "train_seconds", "peak_memory_bytes")
    }
    (directory / RESULT).write_text(json.dumps(numbers))


def _base_of(base_model: str, spec: JobSpec, base_model_path: Path, resources: Resources) -> Path:
    """A member's base model folder: the job's own, or one that whoever runs the engine provided."""
    if base_model == spec.base_model:
        return base_model_path
    if base_model not in resources.base_models:
        raise MissingResource(f"base model {base_model!r} of an ensemble member was not provided to the engine")
    return resources.base_models[base_model]


def _finished_member(
    directory: Path, spec: JobSpec, base_model_path: Path, resources: Resources
) -> AdaptationResult | None:
    if not (directory / RESULT).exists():
        return None
    loaded = load_classifier(directory, _base_of(read_card(directory)["base_model"], spec, base_model_path, resources))
    numbers = json.loads((directory / RESULT).read_text())
    return AdaptationResult(loaded.model, loaded.tokenizer, loaded.labels, **numbers)


def save_ensemble(result: AdaptationResult, spec: JobSpec, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (member, member_result) in enumerate(result.members):
        path = f"members/{index}"
        save_single(member_result, member, directory / path)
        entries.append(
            {
                "path": path,
                "base_model": member.base_model,
                "recipe": member.recipe,
                "metrics": result.metrics["members"][index],
            }
        )
    card = {
        "kind": "ensemble",
        "labels": result.labels,
        "base_model": spec.base_model,
        "weights": "ensemble",
        "task": spec.task,
        "threshold": result.threshold,
        "max_length": max(member.training.max_length for member, _ in result.members),
        "members": entries,
    }
    (directory / CARD).write_text(json.dumps(card, indent=2))
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())

"""`adapt(spec, data, base_model_path, callbacks) -> AdaptationResult`: one adaptation job, no server
needed: a single model (single.py), or an ensemble of them (ensemble.py). `save_result` writes
either as an artifact.
"""

from __future__ import annotations

from pathlib import Path

from app.adaptation.callbacks import Callbacks, SilentCallbacks
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.data import TaskData
from app.adaptation.distributed import check_distributable, current_world, main_only
from app.adaptation.ensemble import adapt_ensemble, save_ensemble
from app.adaptation.resources import Resources
from app.adaptation.result import AdaptationResult
from app.adaptation.single import adapt_single, save_single
from app.schemas.spec import JobSpec


def adapt(
    spec: JobSpec,
    data: TaskData,
    base_model_path: Path,
    callbacks: Callbacks | None = None,
    progress_interval: float = 1.0,
    resources: Resources | None = None,
    checkpoints: Checkpoints | None = None,
) -> AdaptationResult:
    """Train one job. With `checkpoints`, the run writes them as it goes and, when one exists
    already (a run of the same spec and data that died or paused), goes on from it."""
    world = current_world()
    check_distributable(spec, world)
    callbacks, resources = main_only(callbacks or SilentCallbacks(), world), resources or Resources()
    train = adapt_ensemble if spec.ensemble is not None else adapt_single
    return train(spec, data, base_model_path, callbacks, progress_interval, resources, checkpoints)


def save_result(result: AdaptationResult, spec: JobSpec, directory: Path) -> int:
    """Write a finished job's model (an ensemble as a folder of its members); returns its bytes."""
    if not result.main:
        raise ValueError("a distributed run's model is saved by rank 0 alone; this result is another rank's replica")
    return save_ensemble(result, spec, directory) if result.members else save_single(result, spec, directory)

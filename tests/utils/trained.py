"""Small trained models saved as a job saves them, for tests of what reads artifacts (serving, export)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from app.adaptation import TaskData, adapt
from app.adaptation.artifact import read_card
from app.adaptation.job import save_result
from app.config import Settings
from app.db.models import Model
from app.db.session import session_scope
from app.storage.artifacts import LocalArtifactStore
from tests.adaptation.helpers import job
from tests.utils.data import sentiment


def train_and_save(base: Path, overrides: dict, directory: Path, seed: int = 0, rows: int = 32) -> Path:
    """A one-epoch model of `base` with the spec `overrides`, saved in `directory`. Its adapter and
    LoRA up-projections are then set to random values, so that they change the base's outputs far
    more than a short training would (a reader that dropped one would show it)."""
    spec = job(**overrides, training={"epochs": 1, "seed": seed})
    result = adapt(spec, TaskData(sentiment(rows, seed=seed)), base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in result.model.named_parameters():
            if ".adapter.up." in name or ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    save_result(result, spec, directory)
    return directory


def publish_trained(settings: Settings, tenant_id: str, model_id: str, directory: Path) -> str:
    """The saved model in the local store and the database, the tenant's, as a finished job leaves
    it: its row's labels are the artifact's and its spec the defaults' (text, label columns)."""
    store = LocalArtifactStore(settings.resolved_artifacts_dir)
    shutil.copytree(directory, store.staging_dir(model_id), dirs_exist_ok=True)
    size = store.publish_model(model_id)
    with session_scope(settings.resolved_database_url) as session:
        session.add(
            Model(
                id=model_id,
                tenant_id=tenant_id,
                job_id="job_done",
                base_model="tiny-bert",
                spec=job().model_dump(mode="json"),
                labels=read_card(directory)["labels"],
                metrics={},
                trainable_params=0,
                total_params=0,
                artifact_bytes=size,
            )
        )
    return model_id

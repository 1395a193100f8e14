"""The worker's runner reads what a job references from the spec's own list of references, and
runs specs stored before stages carried their expanded job."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.catalog import Catalog
from app.config import Settings
from app.schemas.recipes import expand
from app.storage.artifacts import LocalArtifactStore
from worker.runner import load_resources, stored_spec


def test_a_spec_stored_before_stages_carried_their_job_gets_the_job_expand_gives():
    spec = expand(
        {
            "recipe": "adapters",
            "data": {"train": "ds_train"},
            "stages": [
                {"objective": "masked_lm", "data": "ds_text"},
                {"objective": "classification", "data": "ds_aux"},
            ],
        }
    )
    document = spec.model_dump(mode="json")
    assert all(stage["job"]["recipe"] == "fine_tuning" for stage in document["stages"])  # stored with the job
    for stage in document["stages"]:
        del stage["job"]  # as a record written by an earlier version of the service
    assert stored_spec(document) == spec
    assert stored_spec(spec.model_dump(mode="json")) == spec  # a complete record is taken as it is


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    store = LocalArtifactStore(tmp_path / "artifacts")
    for dataset_id in ("ds_train", "ds_text", "ds_fisher", "ds_unlabeled"):
        store.write_dataset(dataset_id, [{"text": f"{dataset_id} row {i}", "label": "a"} for i in range(3)])
    return store


def test_the_loader_reads_every_referenced_dataset_but_the_task_data(store, tiny_model_dir, tmp_path):
    spec = expand(
        {
            "base_model": "tiny-bert",
            "recipe": "ewc",
            "data": {"train": "ds_train"},
            "optimization": {"regularizers": [{"fisher_data": "ds_fisher"}]},
            # a stage on the training set's own text: read as a table, though it is also the task data
            "stages": [{"objective": "masked_lm", "data": "ds_train"}],
            "ensemble": {"members": [{}, {"consistency": {"data": "ds_unlabeled"}}]},
        }
    )
    catalog = Catalog(Settings(var_dir=tmp_path, base_models={"tiny-bert": tiny_model_dir}))
    resources = load_resources(store, catalog, spec)
    assert set(resources.tables) == {"ds_train", "ds_fisher", "ds_unlabeled"}
    assert resources.tables["ds_fisher"] == store.read_dataset("ds_fisher")
    assert resources.base_models == {"tiny-bert": tiny_model_dir}
    assert resources.models == {}

"""The artifact store in S3-compatible object storage (moto's server, over HTTP on loopback): every
node reads what another wrote, through a cache of its own, and checks it against its checksums."""

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from app.config import Settings
from app.storage import object_store
from app.storage.artifacts import MANIFEST, CorruptArtifact, LocalArtifactStore
from app.storage.object_store import ObjectArtifactStore
from app.storage.store import ArtifactStore, build_store
from tests.utils.s3 import ObjectStorage

ROWS = [{"text": "hello there", "label": "a"}, {"text": "ünïcode bye", "label": "b"}]


@pytest.fixture
def prefix() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"  # each test its own corner of the shared bucket


def node(tmp_path: Path, storage: ObjectStorage, prefix: str, name: str, **settings) -> ObjectArtifactStore:
    """A store as one node builds it: the shared bucket, a var_dir (and so a cache) of its own."""
    options = {**storage.settings_for(prefix), **settings}
    store = build_store(Settings(var_dir=tmp_path / name, **options))
    assert isinstance(store, ObjectArtifactStore) and isinstance(store, ArtifactStore)
    return store


def publish(store: ArtifactStore, model_id: str, weights: bytes = b"0123456789" * 100) -> int:
    staged = store.staging_dir(model_id)
    (staged / "model.safetensors").write_bytes(weights)
    (staged / "tokenizer").mkdir()
    (staged / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return store.publish_model(model_id)


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(f.relative_to(directory)): f.read_bytes() for f in sorted(directory.rglob("*")) if f.is_file()}


def test_the_default_store_is_the_local_folder(tmp_path):
    store = build_store(Settings(var_dir=tmp_path))
    assert isinstance(store, LocalArtifactStore) and isinstance(store, ArtifactStore)
    assert store.model_dir("mdl_1") == (tmp_path / "artifacts" / "models" / "mdl_1").resolve()


def test_a_dataset_written_by_one_node_is_read_by_another(tmp_path, object_storage, prefix):
    writer, reader = node(tmp_path, object_storage, prefix, "a"), node(tmp_path, object_storage, prefix, "b")
    writer.write_dataset("ds_1", ROWS)
    assert object_storage.keys(prefix) == [f"{prefix}/datasets/ds_1.jsonl", f"{prefix}/datasets/ds_1.sha256"]
    assert writer.read_dataset("ds_1") == ROWS
    assert reader.read_dataset("ds_1") == ROWS
    assert (tmp_path / "b" / "cache" / "datasets" / "ds_1.jsonl").exists()  # read from its copy from now on


def test_a_model_published_by_one_node_is_served_whole_by_another_with_an_empty_cache(tmp_path, object_storage, prefix):
    trainer, replica = node(tmp_path, object_storage, prefix, "a"), node(tmp_path, object_storage, prefix, "b")
    size = publish(trainer, "mdl_1")
    published = trainer.model_dir("mdl_1")
    assert size == sum(len(data) for data in files_of(published).values())
    assert object_storage.keys(f"{prefix}/models/mdl_1/") == [
        f"{prefix}/models/mdl_1/{name}" for name in (MANIFEST, "model.safetensors", "tokenizer/vocab.txt")
    ]
    directory = replica.model_dir("mdl_1")
    assert not directory.exists()  # model_dir names the folder; it fetches nothing
    replica.verify_model("mdl_1")
    assert directory == (tmp_path / "b" / "cache" / "models" / "mdl_1").resolve()
    assert files_of(directory) == files_of(published)
    assert not list((tmp_path / "b" / "cache" / ".partial").iterdir())  # no download left behind


def test_a_model_object_changed_in_the_bucket_is_refused_by_a_node_without_a_copy(tmp_path, object_storage, prefix):
    publish(node(tmp_path, object_storage, prefix, "a"), "mdl_1")
    key = f"{prefix}/models/mdl_1/model.safetensors"
    object_storage.overwrite(key, b"9" + object_storage.read(key)[1:])
    replica = node(tmp_path, object_storage, prefix, "b")
    with pytest.raises(CorruptArtifact, match="model.safetensors does not match its checksum"):
        replica.verify_model("mdl_1")
    assert not replica.model_dir("mdl_1").exists()  # nothing of it is kept
    assert not list((tmp_path / "b" / "cache" / ".partial").iterdir())


def test_a_dataset_object_changed_in_the_bucket_is_refused_by_a_node_without_a_copy(tmp_path, object_storage, prefix):
    node(tmp_path, object_storage, prefix, "a").write_dataset("ds_1", ROWS)
    object_storage.overwrite(f"{prefix}/datasets/ds_1.jsonl", b'{"text": "forged", "label": "a"}\n')
    with pytest.raises(CorruptArtifact, match="dataset 'ds_1' does not match the checksum written at upload"):
        node(tmp_path, object_storage, prefix, "b").read_dataset("ds_1")


def test_a_damaged_local_copy_is_fetched_again(tmp_path, object_storage, prefix):
    store = node(tmp_path, object_storage, prefix, "a")
    publish(store, "mdl_1")
    store.write_dataset("ds_1", ROWS)
    (store.model_dir("mdl_1") / "model.safetensors").write_bytes(b"damaged on this node")
    store.cache.dataset_path("ds_1").write_text("damaged\n")
    store.verify_model("mdl_1")
    assert (store.model_dir("mdl_1") / "model.safetensors").read_bytes() == b"0123456789" * 100
    assert store.read_dataset("ds_1") == ROWS


def test_a_model_without_its_manifest_was_not_published_and_is_not_served(tmp_path, object_storage, prefix):
    object_storage.overwrite(f"{prefix}/models/mdl_1/model.safetensors", b"half a model")  # died mid-upload
    with pytest.raises(CorruptArtifact, match=f"model 'mdl_1' has no {MANIFEST} in the artifact store"):
        node(tmp_path, object_storage, prefix, "b").verify_model("mdl_1")


def test_the_cache_evicts_the_least_recently_used_copy_to_stay_within_its_budget(tmp_path, object_storage, prefix):
    weights = {name: bytes([i]) * 4000 for i, name in enumerate(["mdl_1", "mdl_2", "mdl_3"])}
    trainer = node(tmp_path, object_storage, prefix, "a")
    for model_id, data in weights.items():
        publish(trainer, model_id, data)
    model_bytes = trainer.cache.copies()[0].size
    replica = node(tmp_path, object_storage, prefix, "b", artifact_cache_bytes=int(2.5 * model_bytes))
    replica.cache.in_use_seconds = 0  # here, a copy is never in use past verify_model
    replica.verify_model("mdl_1")
    replica.verify_model("mdl_2")
    backdate(replica.model_dir("mdl_2"), 20)  # mdl_2 used before mdl_1, whatever the clock's resolution
    replica.verify_model("mdl_3")
    assert sorted(copy.artifact_id for copy in replica.cache.copies()) == ["mdl_1", "mdl_3"]
    assert replica.cache.used_bytes() <= replica.cache.budget_bytes
    replica.verify_model("mdl_2")  # fetched again when needed
    assert files_of(replica.model_dir("mdl_2"))["model.safetensors"] == weights["mdl_2"]


def test_a_copy_in_use_is_not_evicted_even_over_the_budget(tmp_path, object_storage, prefix):
    trainer = node(tmp_path, object_storage, prefix, "a")
    publish(trainer, "mdl_1")
    publish(trainer, "mdl_2")
    replica = node(tmp_path, object_storage, prefix, "b", artifact_cache_bytes=0)
    replica.verify_model("mdl_1")
    replica.verify_model("mdl_2")  # mdl_1 was used a moment ago: perhaps still being loaded
    assert sorted(copy.artifact_id for copy in replica.cache.copies()) == ["mdl_1", "mdl_2"]
    backdate(replica.model_dir("mdl_1"), replica.cache.in_use_seconds + 1)
    replica.write_dataset("ds_1", ROWS)  # mdl_1 is no longer in use; mdl_2 still may be
    assert sorted(copy.artifact_id for copy in replica.cache.copies()) == ["ds_1", "mdl_2"]


def test_deleting_removes_the_objects_and_this_nodes_copies(tmp_path, object_storage, prefix):
    store = node(tmp_path, object_storage, prefix, "a")
    store.write_dataset("ds_1", ROWS)
    publish(store, "mdl_1")
    publish(store, "mdl_10")  # its name starts with the other's
    store.delete_dataset("ds_1")
    store.delete_model("mdl_1")
    assert object_storage.keys(prefix) == object_storage.keys(f"{prefix}/models/mdl_10/") != []
    assert [copy.artifact_id for copy in store.cache.copies()] == ["mdl_10"]
    with pytest.raises(FileNotFoundError):
        store.read_dataset("ds_1")
    with pytest.raises(CorruptArtifact):
        store.verify_model("mdl_1")
    store.delete_model("mdl_1")  # deleting what is gone is no error
    store.delete_dataset("ds_1")


def test_checkpoints_stay_on_the_node_which_lists_the_jobs_it_holds(tmp_path, object_storage, prefix):
    store = node(tmp_path, object_storage, prefix, "a")
    assert store.checkpoint_jobs() == []
    directory = store.checkpoint_dir("job_1")
    assert directory == (tmp_path / "a" / "checkpoints" / "job_1").resolve()
    for job_id in ("job_2", "job_1"):
        store.checkpoint_dir(job_id).mkdir(parents=True)
    (directory / "state.json").write_text(json.dumps({"step": 1}))
    assert store.checkpoint_jobs() == ["job_1", "job_2"]
    assert object_storage.keys(prefix) == []  # nothing of them in the bucket
    store.delete_checkpoints("job_1")
    assert not directory.exists() and store.checkpoint_jobs() == ["job_2"] and object_storage.keys(prefix) == []


def backdate(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_copy_being_checked_is_not_evicted_under_the_reader(tmp_path, object_storage, prefix, monkeypatch):
    publish(node(tmp_path, object_storage, prefix, "a"), "mdl_1")
    replica = node(tmp_path, object_storage, prefix, "b", artifact_cache_bytes=1)  # over budget at once
    replica.verify_model("mdl_1")
    directory = replica.model_dir("mdl_1")
    backdate(directory, 3600)  # unused for an hour: the first copy to go when eviction runs
    checked = object_store._matches_manifest

    def evicted_just_after_the_check(folder: Path) -> bool:
        matches = checked(folder)
        replica.cache.evict_over_budget(keep=tmp_path / "another-copy")  # another reader's eviction
        return matches

    monkeypatch.setattr(object_store, "_matches_manifest", evicted_just_after_the_check)
    replica.verify_model("mdl_1")
    assert (directory / "model.safetensors").is_file()  # still there for the caller to read

"""The artifact store's interface, and the store that the settings choose: the local folder
(artifacts.py) by default, object storage shared by every node (object_store.py) with
`artifacts_url`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from app.storage.artifacts import LocalArtifactStore

if TYPE_CHECKING:
    from app.config import Settings


@runtime_checkable
class ArtifactStore(Protocol):
    """Datasets and trained models, written once with sha256 checksums and read by any node, and
    the checkpoints of running jobs. A file that no longer matches its checksum raises
    CorruptArtifact and is never used.

    Reading a model takes two calls, so that the event loop never waits on storage:
    `model_dir` only names the folder (no I/O); `verify_model`, called off the event loop before
    the folder is read, makes it complete and checked (a store shared by several nodes downloads it
    there first). Read a model's folder only after `verify_model` returned.
    """

    def write_dataset(self, dataset_id: str, rows: Iterable[dict[str, str]]) -> None:
        """Store the rows with their checksum; visible to readers only once whole."""
        ...

    def read_dataset(self, dataset_id: str) -> list[dict[str, str]]:
        """The rows, checked against the checksum written at upload (CorruptArtifact if not)."""
        ...

    def delete_dataset(self, dataset_id: str) -> None: ...

    def staging_dir(self, model_id: str) -> Path:
        """An empty local folder to write a new model into, before `publish_model`."""
        ...

    def publish_model(self, model_id: str) -> int:
        """Checksum the staged model and make it readable as a whole; returns its size in bytes."""
        ...

    def model_dir(self, model_id: str) -> Path:
        """The local folder of the model. No I/O: it may be empty or stale until `verify_model`."""
        ...

    def verify_model(self, model_id: str) -> None:
        """Make `model_dir` complete and matching its checksums, or raise CorruptArtifact."""
        ...

    def delete_model(self, model_id: str) -> None:
        """Remove the model from the store and from this node."""
        ...

    def checkpoint_dir(self, job_id: str) -> Path:
        """A running job's checkpoints, on the node that runs it."""
        ...

    def delete_checkpoints(self, job_id: str) -> None: ...

    def checkpoint_jobs(self) -> list[str]:
        """The jobs this node holds checkpoints of."""
        ...


def build_store(settings: Settings) -> ArtifactStore:
    """The local folder, or with `artifacts_url` object storage read through this node's cache."""
    if settings.artifacts_url is None:
        return LocalArtifactStore(settings.resolved_artifacts_dir)
    # Imported here: fsspec and s3fs load only where object storage is configured.
    from app.storage.node_cache import NodeCache
    from app.storage.object_store import ObjectArtifactStore, open_filesystem

    fs, root = open_filesystem(settings)
    cache_dir = (settings.artifact_cache_dir or settings.var_dir / "cache").resolve()
    cache = NodeCache(cache_dir, settings.artifact_cache_bytes)
    return ObjectArtifactStore(fs, root, cache, checkpoint_root=(settings.var_dir / "checkpoints").resolve())

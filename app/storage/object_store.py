"""The artifact store in object storage (S3 and S3-compatible servers, through fsspec), shared by
every API replica and worker node.

Objects under the store's root:

    datasets/<id>.jsonl            the rows, one JSON object a line
    datasets/<id>.sha256           its sha256, uploaded after it: its presence means "uploaded whole"
    models/<id>/...                the model's files
    models/<id>/SHA256SUMS.json    the sha256 of every file, uploaded last: "published whole"

Artifacts are written once and never changed. Each node reads them through its own copies
(node_cache.py): a copy is downloaded under a temporary name, checked against the checksums held in
the object store, then renamed into place; a mismatch raises CorruptArtifact and nothing is kept.

Checkpoints stay on the node that trains (see `checkpoint_dir`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.storage.artifacts import MANIFEST, CorruptArtifact, held_checkpoints, sha256_of
from app.storage.node_cache import PARTIAL, NodeCache

if TYPE_CHECKING:
    from app.config import Settings


class ObjectArtifactStore:
    def __init__(self, fs: Any, root: str, cache: NodeCache, checkpoint_root: Path) -> None:
        """`fs`: an fsspec filesystem; `root`: the store's path in it (for S3, bucket/prefix)."""
        self.fs, self.root, self.cache, self.checkpoint_root = fs, root.rstrip("/"), cache, checkpoint_root
        cache.remove_abandoned_partials()

    # ---- datasets -----------------------------------------------------------------------------

    def write_dataset(self, dataset_id: str, rows: Iterable[dict[str, str]]) -> None:
        partial = self.cache.partial(f"{dataset_id}.jsonl")
        try:
            with partial.open("w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            digest = sha256_of(partial)
            self.fs.put_file(str(partial), self._dataset_object(dataset_id))
            self.fs.pipe_file(self._dataset_checksum_object(dataset_id), digest.encode())  # after the data
            self._keep_dataset_copy(dataset_id, partial, digest)
        finally:
            partial.unlink(missing_ok=True)

    def read_dataset(self, dataset_id: str) -> list[dict[str, str]]:
        path = self.cache.dataset_path(dataset_id)
        if not self._copy_is_intact(dataset_id):
            self._fetch_dataset(dataset_id)
        self.cache.touch(path)
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines]

    def delete_dataset(self, dataset_id: str) -> None:
        # The checksum first: from then on no node starts reading a half-deleted dataset.
        for name in (self._dataset_checksum_object(dataset_id), self._dataset_object(dataset_id)):
            self._remove_object(name)
        self.cache.remove_dataset(dataset_id)

    def _copy_is_intact(self, dataset_id: str) -> bool:
        """This node's copy exists and still matches its checksum; a damaged copy is dropped (the
        object store's is fetched instead)."""
        path, expected = self.cache.dataset_path(dataset_id), self.cache.dataset_checksum_path(dataset_id)
        try:
            if sha256_of(path) == expected.read_text().strip():
                return True
        except FileNotFoundError:
            return False
        self.cache.remove_dataset(dataset_id)
        return False

    def _fetch_dataset(self, dataset_id: str) -> None:
        try:
            expected = self.fs.cat_file(self._dataset_checksum_object(dataset_id)).decode().strip()
        except FileNotFoundError:
            raise FileNotFoundError(f"dataset {dataset_id!r} is not in the artifact store") from None
        partial = self.cache.partial(f"{dataset_id}.jsonl")
        try:
            self.fs.get_file(self._dataset_object(dataset_id), str(partial))
            if sha256_of(partial) != expected:
                raise CorruptArtifact(f"dataset {dataset_id!r} does not match the checksum written at upload")
            self._keep_dataset_copy(dataset_id, partial, expected)
        finally:
            partial.unlink(missing_ok=True)

    def _keep_dataset_copy(self, dataset_id: str, partial: Path, digest: str) -> None:
        # The checksum first, then the data: a reader that finds the data finds its checksum.
        checksum = self.cache.partial(f"{dataset_id}.sha256")
        checksum.write_text(digest)
        self.cache.place_file(checksum, self.cache.dataset_checksum_path(dataset_id))
        target = self.cache.dataset_path(dataset_id)
        self.cache.place_file(partial, target)
        self.cache.evict_over_budget(keep=target)

    # ---- models -------------------------------------------------------------------------------

    def model_dir(self, model_id: str) -> Path:
        """Where this node's copy of the model is, or will be once `verify_model` fetched it. No
        I/O, so that the event loop may ask."""
        return self.cache.model_dir(model_id)

    def staging_dir(self, model_id: str) -> Path:
        """Where a model is written before `publish_model` uploads it."""
        path = self._staging(model_id)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def publish_model(self, model_id: str) -> int:
        """Checksum every staged file, upload the files, then the manifest (last: its presence means
        the model is whole); the staged folder becomes this node's copy. Returns the size in bytes."""
        staged = self._staging(model_id)
        files = sorted(f for f in staged.rglob("*") if f.is_file())
        sums = {f.relative_to(staged).as_posix(): sha256_of(f) for f in files}
        (staged / MANIFEST).write_text(json.dumps(sums, indent=1))
        try:
            for name in sums:
                self.fs.put_file(str(staged / name), self._model_object(model_id, name))
            self.fs.put_file(str(staged / MANIFEST), self._model_object(model_id, MANIFEST))
        except Exception:
            # Unpublished objects are never served; removed so that they do not pile up.
            self._remove_object(self._model_prefix(model_id), recursive=True, best_effort=True)
            raise
        size = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
        target = self.model_dir(model_id)
        self.cache.place_dir(staged, target)
        self.cache.evict_over_budget(keep=target)
        return size

    def verify_model(self, model_id: str) -> None:
        """Make this node's copy complete and checked: a copy that is missing, or no longer matches
        its checksums, is downloaded again and checked against the manifest in the object store.
        Raises CorruptArtifact when the object store's files do not match their checksums, or the
        model was never published whole (no manifest)."""
        directory = self.model_dir(model_id)
        # Used now, before the check: eviction (another thread or process) skips a copy in use, so the
        # copy checked here is still there when the caller reads it.
        self.cache.touch(directory)
        if not _matches_manifest(directory):
            self.cache.remove_model(model_id)
            self._fetch_model(model_id)
            self.cache.touch(directory)

    def delete_model(self, model_id: str) -> None:
        # The manifest first: from then on no node fetches a half-deleted model.
        self._remove_object(self._model_object(model_id, MANIFEST))
        self._remove_object(self._model_prefix(model_id), recursive=True)
        self.cache.remove_model(model_id)
        shutil.rmtree(self._staging(model_id), ignore_errors=True)

    def _fetch_model(self, model_id: str) -> None:
        try:
            manifest = self.fs.cat_file(self._model_object(model_id, MANIFEST))
        except FileNotFoundError:
            raise CorruptArtifact(
                f"model {model_id!r} has no {MANIFEST} in the artifact store (it was never published whole); "
                "it will not be served"
            ) from None
        sums: dict[str, str] = json.loads(manifest)
        partial = self.cache.partial(model_id)
        try:
            for name, digest in sums.items():
                local = partial / name
                local.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.fs.get_file(self._model_object(model_id, name), str(local))
                except FileNotFoundError:
                    raise CorruptArtifact(f"model {model_id!r}: {name} is missing from the artifact store") from None
                if sha256_of(local) != digest:
                    raise CorruptArtifact(
                        f"model {model_id!r}: {name} does not match its checksum; it will not be served"
                    )
            (partial / MANIFEST).write_bytes(manifest)  # last, as in the object store
            target = self.model_dir(model_id)
            self.cache.place_dir(partial, target)
            self.cache.evict_over_budget(keep=target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    # ---- checkpoints --------------------------------------------------------------------------

    def checkpoint_dir(self, job_id: str) -> Path:
        """A running job's checkpoints, on the node that trains it (not in the object store): a job
        paused or re-queued goes on from its last checkpoint when it runs on the same node again;
        on another node it trains from the start. Removed when the job ends."""
        return self.checkpoint_root / job_id

    def delete_checkpoints(self, job_id: str) -> None:
        """This node's checkpoints of the job (those on other nodes are theirs to remove)."""
        shutil.rmtree(self.checkpoint_dir(job_id), ignore_errors=True)

    def checkpoint_jobs(self) -> list[str]:
        return held_checkpoints(self.checkpoint_root)

    # ---- object names -------------------------------------------------------------------------

    def _dataset_object(self, dataset_id: str) -> str:
        return f"{self.root}/datasets/{dataset_id}.jsonl"

    def _dataset_checksum_object(self, dataset_id: str) -> str:
        return f"{self.root}/datasets/{dataset_id}.sha256"

    def _model_prefix(self, model_id: str) -> str:
        return f"{self.root}/models/{model_id}"

    def _model_object(self, model_id: str, name: str) -> str:
        return f"{self._model_prefix(model_id)}/{name}"

    def _staging(self, model_id: str) -> Path:
        return self.cache.root / PARTIAL / f"staged-{model_id}"

    def _remove_object(self, name: str, recursive: bool = False, best_effort: bool = False) -> None:
        try:
            self.fs.rm(name, recursive=recursive)
        except FileNotFoundError:
            pass
        except Exception:
            if not best_effort:
                raise


def _matches_manifest(directory: Path) -> bool:
    """A local copy with its manifest whose every file matches its checksum."""
    try:
        sums = json.loads((directory / MANIFEST).read_text())
        return all(sha256_of(directory / name) == digest for name, digest in sums.items())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return False


def open_filesystem(settings: Settings, url: str | None = None) -> tuple[Any, str]:
    """The filesystem and root path of `url`, by default `artifacts_url` (any fsspec URL; s3://
    with the S3 settings).

    Every store gets a filesystem of its own, without fsspec's listing cache: other nodes write to
    the same bucket, and a cached listing would hide their objects."""
    import fsspec

    url = url or settings.artifacts_url
    assert url is not None
    options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    if fsspec.utils.get_protocol(url) in ("s3", "s3a"):
        options.update(
            key=settings.s3_access_key_id,
            secret=settings.s3_secret_access_key,
            endpoint_url=settings.s3_endpoint_url,
            client_kwargs={"region_name": settings.s3_region} if settings.s3_region else {},
        )
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, root

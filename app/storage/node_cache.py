"""This node's copies of artifacts that live in object storage, under a size budget.

Layout under the cache folder:

    datasets/<id>.jsonl, datasets/<id>.sha256   a dataset and the checksum it was uploaded with
    models/<id>/                                a model's files and its SHA256SUMS.json
    .partial/                                   downloads and staged models before they are renamed
                                                into place (never counted, never evicted)

Every copy appears whole or not at all: it is written under `.partial/` and renamed into place. The
modification time of a dataset's file or a model's folder records its last use; past the budget,
the least recently used copies are removed. A copy used within the last `in_use_seconds` is left
alone even over the budget: it may be being loaded right now, by this process or another process
sharing the folder (the serving cache reads a model's files just after `verify_model` fetched
them). Removing a folder whose files another process has open is harmless on POSIX.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PARTIAL = ".partial"
ABANDONED_SECONDS = 24 * 3600  # a partial download this old was left by a process that died


@dataclass(frozen=True)
class CachedCopy:
    kind: str  # "datasets" or "models"
    artifact_id: str
    paths: tuple[Path, ...]  # what to remove; the first one's mtime is its last use
    size: int

    @property
    def last_used(self) -> float:
        return self.paths[0].stat().st_mtime


class NodeCache:
    def __init__(self, root: Path, budget_bytes: int, in_use_seconds: float = 60.0) -> None:
        self.root, self.budget_bytes, self.in_use_seconds = root, budget_bytes, in_use_seconds
        self._evicting = threading.Lock()  # one eviction pass at a time in this process

    def dataset_path(self, dataset_id: str) -> Path:
        return self.root / "datasets" / f"{dataset_id}.jsonl"

    def remove_abandoned_partials(self) -> None:
        folder = self.root / PARTIAL
        if not folder.is_dir():
            return
        cutoff = time.time() - ABANDONED_SECONDS
        for leftover in folder.iterdir():
            try:
                if leftover.lstat().st_mtime < cutoff:
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            except OSError:
                pass  # removed meanwhile by another process doing the same

    def dataset_checksum_path(self, dataset_id: str) -> Path:
        return self.root / "datasets" / f"{dataset_id}.sha256"

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def partial(self, name: str) -> Path:
        """A fresh temporary path (not created) under `.partial/`; unique, so that threads and
        processes sharing the folder never write the same file."""
        folder = self.root / PARTIAL
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.{uuid.uuid4().hex}"

    def touch(self, path: Path) -> None:
        """Mark a copy as just used (its place in the least-recently-used order)."""
        try:
            os.utime(path)
        except FileNotFoundError:
            pass  # evicted by another process meanwhile: the next read fetches it again

    def place_file(self, partial: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target)

    def place_dir(self, partial: Path, target: Path) -> None:
        """Rename a complete folder into place; if another thread or process placed the same
        artifact first, theirs stays (artifacts are written once, so both are the same)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(partial, target)
        except OSError:  # the target exists and is not empty
            if not target.is_dir():
                raise
            shutil.rmtree(partial, ignore_errors=True)

    def remove_dataset(self, dataset_id: str) -> None:
        # The data first: a copy is known by its data file (`copies`), and a reader that finds
        # no checksum fetches the dataset again.
        self.dataset_path(dataset_id).unlink(missing_ok=True)
        self.dataset_checksum_path(dataset_id).unlink(missing_ok=True)

    def remove_model(self, model_id: str) -> None:
        remove_tree(self.model_dir(model_id), self)

    # ---- the budget ---------------------------------------------------------------------------

    def copies(self) -> list[CachedCopy]:
        found: list[CachedCopy] = []
        datasets, models = self.root / "datasets", self.root / "models"
        if datasets.is_dir():
            for data in datasets.glob("*.jsonl"):
                paths = (data, data.with_suffix(".sha256"))
                found.append(CachedCopy("datasets", data.stem, paths, sum(_size(p) for p in paths)))
        if models.is_dir():
            for folder in models.iterdir():
                if not folder.is_dir():
                    continue
                try:
                    size = sum(_size(f) for f in folder.rglob("*") if f.is_file())
                except FileNotFoundError:
                    continue  # removed meanwhile by another process sharing the folder
                found.append(CachedCopy("models", folder.name, (folder,), size))
        return found

    def used_bytes(self) -> int:
        return sum(copy.size for copy in self.copies())

    def evict_over_budget(self, keep: Path) -> list[CachedCopy]:
        """Remove least recently used copies until the cache fits its budget; never `keep` (the
        copy that was just fetched or written), nor a copy used within `in_use_seconds`."""
        with self._evicting:
            copies = self.copies()
            total = sum(copy.size for copy in copies)
            if total <= self.budget_bytes:
                return []
            recent = time.time() - self.in_use_seconds
            evicted = []
            for copy in sorted(copies, key=_last_used_or_now):
                if total <= self.budget_bytes:
                    break
                if copy.paths[0] == keep or _last_used_or_now(copy) > recent:
                    continue
                for path in copy.paths:
                    if path.is_dir():
                        remove_tree(path, self)
                    else:
                        path.unlink(missing_ok=True)
                total -= copy.size
                evicted.append(copy)
            return evicted


def remove_tree(folder: Path, cache: NodeCache) -> None:
    """Remove a folder so that it disappears at once: renamed away first, then deleted, so that a
    reader never finds half a model in its place."""
    if not folder.exists():
        return
    doomed = cache.partial(f"removed-{folder.name}")
    try:
        os.replace(folder, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _last_used_or_now(copy: CachedCopy) -> float:
    try:
        return copy.last_used
    except FileNotFoundError:  # removed by another process meanwhile
        return time.time()

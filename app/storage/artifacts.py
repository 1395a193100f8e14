"""The local artifact store. Every write lands in a temporary name first and is renamed into place,
so a reader never sees half a dataset or half a model. Every dataset and model carries the sha256 of
its files, written when it is created and checked when it is read: a corrupt artifact is reported,
never used."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "SHA256SUMS.json"


class CorruptArtifact(RuntimeError):
    """A stored file no longer matches the checksum written when it was created."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def dataset_path(self, dataset_id: str) -> Path:
        return self.root / "datasets" / f"{dataset_id}.jsonl"

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def checkpoint_dir(self, job_id: str) -> Path:
        """A running job's checkpoints; removed when the job ends."""
        return self.root / "checkpoints" / job_id

    def delete_checkpoints(self, job_id: str) -> None:
        shutil.rmtree(self.checkpoint_dir(job_id), ignore_errors=True)

    def checkpoint_jobs(self) -> list[str]:
        return held_checkpoints(self.root / "checkpoints")

    def write_dataset(self, dataset_id: str, rows: Iterable[dict[str, str]]) -> None:
        path = self.dataset_path(dataset_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        _checksum_path(path).write_text(sha256_of(partial))
        os.replace(partial, path)

    def read_dataset(self, dataset_id: str) -> list[dict[str, str]]:
        path = self.dataset_path(dataset_id)
        expected = _checksum_path(path)
        if expected.exists() and sha256_of(path) != expected.read_text().strip():
            raise CorruptArtifact(f"dataset {dataset_id!r} does not match the checksum written at upload")
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines]

    def delete_dataset(self, dataset_id: str) -> None:
        self.dataset_path(dataset_id).unlink(missing_ok=True)
        _checksum_path(self.dataset_path(dataset_id)).unlink(missing_ok=True)

    def staging_dir(self, model_id: str) -> Path:
        """Where a model is written before `publish_model` moves it into place."""
        path = self.root / "models" / f".{model_id}.partial"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def publish_model(self, model_id: str) -> int:
        """Checksum every file of the staged model, move it into place; returns its size in bytes."""
        staged = self.root / "models" / f".{model_id}.partial"
        sums = {str(f.relative_to(staged)): sha256_of(f) for f in sorted(staged.rglob("*")) if f.is_file()}
        (staged / MANIFEST).write_text(json.dumps(sums, indent=1))
        size = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
        os.replace(staged, self.model_dir(model_id))
        return size

    def verify_model(self, model_id: str) -> None:
        """Raise CorruptArtifact when a file of the model is missing or differs from its checksum."""
        directory = self.model_dir(model_id)
        manifest = directory / MANIFEST
        if not manifest.exists():
            return  # written before models carried checksums: nothing to check against
        for name, digest in json.loads(manifest.read_text()).items():
            path = directory / name
            if not path.is_file() or sha256_of(path) != digest:
                raise CorruptArtifact(f"model {model_id!r}: {name} does not match its checksum; it will not be served")

    def delete_model(self, model_id: str) -> None:
        shutil.rmtree(self.model_dir(model_id), ignore_errors=True)
        shutil.rmtree(self.root / "models" / f".{model_id}.partial", ignore_errors=True)


def _checksum_path(dataset_path: Path) -> Path:
    return dataset_path.with_suffix(".sha256")


def held_checkpoints(root: Path) -> list[str]:
    """The job ids that have a checkpoint folder under `root`."""
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir()) if root.is_dir() else []

"""The local artifact store. Every write lands in a temporary name first and is renamed into place,
so a reader never sees half a dataset or half a model."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path


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

    def write_dataset(self, dataset_id: str, rows: Iterable[dict[str, str]]) -> None:
        path = self.dataset_path(dataset_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(partial, path)

    def read_dataset(self, dataset_id: str) -> list[dict[str, str]]:
        with self.dataset_path(dataset_id).open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines]

    def delete_dataset(self, dataset_id: str) -> None:
        self.dataset_path(dataset_id).unlink(missing_ok=True)

    def staging_dir(self, model_id: str) -> Path:
        """Where a model is written before `publish_model` moves it into place."""
        path = self.root / "models" / f".{model_id}.partial"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def publish_model(self, model_id: str) -> Path:
        target = self.model_dir(model_id)
        os.replace(self.root / "models" / f".{model_id}.partial", target)
        return target

    def delete_model(self, model_id: str) -> None:
        shutil.rmtree(self.model_dir(model_id), ignore_errors=True)
        shutil.rmtree(self.root / "models" / f".{model_id}.partial", ignore_errors=True)

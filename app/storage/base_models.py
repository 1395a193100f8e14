"""Base models in object storage: a catalog entry `s3://bucket/prefix` (any fsspec URL) names a
Hugging Face folder whose files lie under that prefix, with SHA256SUMS.json beside them, uploaded
last (`thaw base-models upload` writes both; the manifest's presence means "uploaded whole").

Each node fetches its own copy into its cache the first time a job or a prediction needs it: the
files are downloaded under a temporary name, each checked against its checksum, then the folder is
renamed into place, so that no reader sees half a folder and a mismatch keeps nothing
(CorruptArtifact). A copy in place was checked whole before its rename and is not hashed again: a
prediction asks for its base model's folder on every request.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from app.storage.artifacts import MANIFEST, CorruptArtifact, sha256_of


def upload_base_model(fs: Any, root: str, directory: Path) -> dict[str, str]:
    """Every file of the local folder under `root`, then their checksums; returns the checksums."""
    files = sorted(f for f in directory.rglob("*") if f.is_file() and f.name != MANIFEST)
    sums = {f.relative_to(directory).as_posix(): sha256_of(f) for f in files}
    for name in sums:
        fs.put_file(str(directory / name), f"{root}/{name}")
    fs.pipe_file(f"{root}/{MANIFEST}", json.dumps(sums, indent=1).encode())
    return sums


def remote_config(fs: Any, root: str) -> dict[str, Any]:
    """The folder's config.json, read alone (the catalog lists base models without fetching them)."""
    return json.loads(fs.cat_file(f"{root}/config.json"))


def local_copy(cache_root: Path, model_id: str, url: str) -> Path:
    """Where this node keeps its copy: by id and URL, so that an entry pointed elsewhere is fetched anew."""
    return cache_root / "base-models" / f"{model_id}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def fetch_base_model(fs: Any, root: str, target: Path) -> Path:
    """`target`, holding the checked files of the folder under `root`; fetched if not there yet."""
    if (target / MANIFEST).is_file():
        return target
    try:
        manifest = fs.cat_file(f"{root}/{MANIFEST}")
    except FileNotFoundError:
        raise CorruptArtifact(f"{root} has no {MANIFEST}: the base model was never uploaded whole") from None
    partial = target.with_name(f".partial-{target.name}-{uuid.uuid4().hex[:8]}")
    try:
        for name, digest in json.loads(manifest).items():
            local = partial / name
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                fs.get_file(f"{root}/{name}", str(local))
            except FileNotFoundError:
                raise CorruptArtifact(f"{root}: {name} is missing from object storage") from None
            if sha256_of(local) != digest:
                raise CorruptArtifact(f"{root}: {name} does not match its checksum; the base model is not used")
        (partial / MANIFEST).write_bytes(manifest)  # last: a copy with its manifest is whole
        try:
            os.rename(partial, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # another process placed it first: theirs is as good
                raise
        return target
    finally:
        shutil.rmtree(partial, ignore_errors=True)

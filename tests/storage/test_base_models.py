"""Base models in object storage (moto's S3 server): a catalog entry `s3://...` lists from its
config.json alone, is fetched into the node's cache with its checksums on first use (and not again),
loads as the local folder does, and a corrupt or half-uploaded folder is refused with nothing kept."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from app.adaptation.model import load_pretrained_encoder
from app.catalog import Catalog
from app.cli import cli
from app.config import Settings
from app.storage.artifacts import MANIFEST, CorruptArtifact
from app.storage.base_models import upload_base_model
from app.storage.object_store import open_filesystem
from tests.utils.s3 import ObjectStorage
from tests.utils.tiny_model import build_tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("distilbert", tmp_path_factory.mktemp("distilbert"))


def settings_with(tmp_path: Path, storage: ObjectStorage, url: str) -> Settings:
    s3 = {k: v for k, v in storage.settings_for("unused").items() if k != "artifacts_url"}
    return Settings(var_dir=tmp_path / "var", base_models={"remote": url}, **s3)


def uploaded(storage: ObjectStorage, tmp_path: Path, folder: Path) -> tuple[Settings, str]:
    url = f"s3://{storage.bucket}/base-models/{uuid.uuid4().hex[:8]}"
    settings = settings_with(tmp_path, storage, url)
    upload_base_model(*open_filesystem(settings, url), folder)
    return settings, url


def test_the_catalog_lists_it_from_its_config_and_fetches_it_once_checked(object_storage, tmp_path, folder):
    settings, url = uploaded(object_storage, tmp_path, folder)
    entry = Catalog(settings).get("remote")
    described = entry.describe()
    assert (described["model_type"], described["layers"], described["source"]) == ("distilbert", 2, "object storage")
    assert not (tmp_path / "var" / "cache").exists(), "listing fetched nothing"
    path = entry.path
    assert path.is_relative_to(tmp_path / "var" / "cache")
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == sorted([*local, MANIFEST])
    first = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    assert Catalog(settings).get("remote").path == path  # another process's catalog: the same copy, not fetched again
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == first
    fetched, original = load_pretrained_encoder(path).state_dict(), load_pretrained_encoder(folder).state_dict()
    assert fetched.keys() == original.keys() and all(torch.equal(fetched[k], original[k]) for k in original)


def test_a_corrupt_file_or_a_missing_manifest_is_refused_and_nothing_is_kept(object_storage, tmp_path, folder):
    settings, url = uploaded(object_storage, tmp_path, folder)
    key = url.removeprefix(f"s3://{object_storage.bucket}/")
    object_storage.overwrite(f"{key}/config.json", b'{"model_type": "distilbert"}')
    with pytest.raises(CorruptArtifact, match="config.json does not match its checksum"):
        _ = Catalog(settings).get("remote").path
    assert not list((tmp_path / "var" / "cache").rglob("*.safetensors")), "nothing half-fetched is kept"

    half = settings_with(tmp_path, object_storage, f"s3://{object_storage.bucket}/base-models/never-whole")
    fs, root = open_filesystem(half, str(half.base_models["remote"]))
    fs.put_file(str(folder / "config.json"), f"{root}/config.json")  # no manifest: not uploaded whole
    with pytest.raises(CorruptArtifact, match="never uploaded whole"):
        _ = Catalog(half).get("remote").path


def test_thaw_base_models_upload_writes_the_files_and_their_checksums(object_storage, tmp_path, folder, monkeypatch):
    for name, value in object_storage.settings_for("unused").items():
        if name != "artifacts_url":
            monkeypatch.setenv(f"THAW_{name.upper()}", value)
    url = f"s3://{object_storage.bucket}/base-models/from-cli"
    result = CliRunner().invoke(cli, ["base-models", "upload", str(folder), url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert f"uploaded {len(files)} files to {url}" in result.stdout
    keys = object_storage.keys("base-models/from-cli/")
    assert f"base-models/from-cli/{MANIFEST}" in keys and len(keys) == len(files) + 1
    assert Catalog(settings_with(tmp_path, object_storage, url)).get("remote").describe()["model_type"] == "distilbert"

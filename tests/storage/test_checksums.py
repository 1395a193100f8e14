"""Every dataset and model carries sha256 checksums written at creation and checked at load."""

import json

import pytest

from app.storage.artifacts import MANIFEST, CorruptArtifact, LocalArtifactStore


def flip_a_byte(path, at=10):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_dataset_changed_on_disk_is_refused(tmp_path):
    store = LocalArtifactStore(tmp_path)
    rows = [{"text": "hello there", "label": "a"}, {"text": "bye now", "label": "b"}]
    store.write_dataset("ds_1", rows)
    assert store.read_dataset("ds_1") == rows
    flip_a_byte(store.dataset_path("ds_1"))
    with pytest.raises(CorruptArtifact, match="dataset 'ds_1' does not match the checksum written at upload"):
        store.read_dataset("ds_1")
    store.delete_dataset("ds_1")
    assert list((tmp_path / "datasets").iterdir()) == []  # the checksum goes with it


def test_a_published_model_has_a_checksum_for_every_file_and_a_changed_file_is_refused(tmp_path):
    store = LocalArtifactStore(tmp_path)
    staged = store.staging_dir("mdl_1")
    (staged / "model.safetensors").write_bytes(b"0123456789" * 100)
    (staged / "tokenizer").mkdir()
    (staged / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    size = store.publish_model("mdl_1")
    directory = store.model_dir("mdl_1")
    assert size == sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    assert set(json.loads((directory / MANIFEST).read_text())) == {"model.safetensors", "tokenizer/vocab.txt"}
    store.verify_model("mdl_1")  # intact: no error
    flip_a_byte(directory / "model.safetensors", at=500)
    with pytest.raises(CorruptArtifact, match="model.safetensors does not match its checksum"):
        store.verify_model("mdl_1")
    flip_a_byte(directory / "model.safetensors", at=500)
    (directory / "tokenizer" / "vocab.txt").unlink()
    with pytest.raises(CorruptArtifact, match="tokenizer/vocab.txt does not match its checksum"):
        store.verify_model("mdl_1")

"""`GET /v1/models/{id}/export` over HTTP: a tar.gz of one folder that loads without Thaw and gives the
probabilities `/predict` serves; another tenant's model is a 404, an unknown format a 422 naming it.
`thaw models export` and the client unpack the same archive."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.api.main import create_app
from app.cli import cli
from app.client import Thaw
from tests.adaptation.test_exports import TEXTS, hf_probabilities, onnx_probabilities
from tests.api.test_metrics import publish, tenant_id
from tests.conftest import build_settings
from tests.utils.live_api import live_api
from tests.utils.services import auth, new_key
from tests.utils.trained import train_and_save


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_and_save(tiny_model_dir, {"recipe": "lora", "model": {"lora": {"r": 4}}}, tmp_path_factory.mktemp("m"))


@pytest.fixture
def settings(backend, tmp_path, tiny_model_dir, lora_model, request):
    """A published LoRA model, `mdl_export`, of tenant acme (SQLite, or PostgreSQL + Redis)."""
    urls = (
        ()
        if backend == "sqlite"
        else (request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_server"))
    )
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir}, *urls)
    new_key(settings, "acme")
    publish(settings, tenant_id(settings, "acme"), "mdl_export", lora_model)
    return settings


def served_scores(client: TestClient, headers: dict) -> torch.Tensor:
    response = client.post("/v1/models/mdl_export/predict", json={"inputs": TEXTS}, headers=headers)
    assert response.status_code == 200, response.text
    return torch.tensor([list(p["scores"].values()) for p in response.json()["predictions"]])


def unpack(content: bytes, directory: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        tops = {Path(name).parts[0] for name in tar.getnames()}
        tar.extractall(directory, filter="data")
    (top,) = tops
    return directory / top


@pytest.mark.parametrize(
    ("fmt", "scores", "tolerance"), [("hf", hf_probabilities, 1e-5), ("onnx", onnx_probabilities, 1e-4)]
)
def test_the_export_is_one_folder_that_gives_the_served_probabilities(
    client, headers, tmp_path, fmt, scores, tolerance
):
    response = client.get("/v1/models/mdl_export/export", params={"format": fmt}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    assert f'filename="mdl_export-{fmt}.tar.gz"' in response.headers["content-disposition"]
    folder = unpack(response.content, tmp_path)
    assert folder.name == f"mdl_export-{fmt}"
    torch.testing.assert_close(scores(folder), served_scores(client, headers), atol=tolerance, rtol=0)


def test_another_tenants_model_is_not_found_and_a_bad_format_is_named(client, headers, other_headers):
    assert client.get("/v1/models/mdl_export/export", headers=other_headers).status_code == 404
    assert client.get("/v1/models/mdl_nope/export", headers=headers).status_code == 404
    bad = client.get("/v1/models/mdl_export/export", params={"format": "pickle"}, headers=headers)
    assert bad.status_code == 422 and "format" in bad.text and "'hf'" in bad.text
    assert client.get("/v1/models/mdl_export/export").status_code == 401


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_cli_and_the_client_unpack_the_export(settings, tmp_path, monkeypatch):
    key = new_key(settings, "acme")
    with live_api(settings) as url, TestClient(create_app(settings)) as client:
        expected = served_scores(client, auth(key))
        with Thaw(url, key) as thaw:
            onnx_folder = thaw.export_model("mdl_export", tmp_path / "client", format="onnx")
        monkeypatch.setenv("THAW_CONFIG", str(tmp_path / "no-config.toml"))
        monkeypatch.setenv("THAW_URL", url)
        monkeypatch.setenv("THAW_API_KEY", key)
        result = CliRunner().invoke(
            cli, ["models", "export", "mdl_export", "--format", "hf", "-o", str(tmp_path / "cli")]
        )
    assert result.exit_code == 0, result.output
    assert f"exported mdl_export to {tmp_path / 'cli' / 'mdl_export-hf'}" in result.stdout
    torch.testing.assert_close(hf_probabilities(tmp_path / "cli" / "mdl_export-hf"), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(onnx_probabilities(onnx_folder), expected, atol=1e-4, rtol=0)

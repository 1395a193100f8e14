"""The catalog over HTTP: each entry's model_type and whether Thaw trains it; a job on a model type
the engine does not support is a 422 that names it and lists the supported ones, and creates nothing."""

import json
from pathlib import Path

import pytest

from app.adaptation.architectures import supported
from tests.conftest import build_settings
from tests.utils.data import as_csv, sentiment
from tests.utils.tiny_model import build_tiny


@pytest.fixture
def settings(backend, tmp_path: Path, tiny_model_dir: Path, request: pytest.FixtureRequest):
    distilbert = build_tiny("distilbert", tmp_path / "tiny-distilbert")
    gpt2 = tmp_path / "tiny-gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 32}))
    models = {"tiny-bert": tiny_model_dir, "tiny-distilbert": distilbert, "tiny-gpt2": gpt2}
    if backend == "sqlite":
        return build_settings(tmp_path / "var", models)
    return build_settings(
        tmp_path / "var", models, request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_server")
    )


def test_each_entry_shows_its_model_type_and_whether_it_trains(client, headers):
    items = {m["id"]: m for m in client.get("/v1/base-models", headers=headers).json()["items"]}
    configured = ("minilm-l6", "tiny-bert", "tiny-distilbert", "tiny-gpt2")  # (and mpnet-base once `make mpnet` ran)
    assert {k: (items[k]["model_type"], items[k]["supported"]) for k in configured} == {
        "minilm-l6": ("bert", True),
        "tiny-bert": ("bert", True),
        "tiny-distilbert": ("distilbert", True),
        "tiny-gpt2": ("gpt2", False),
    }
    # DistilBERT's config.json says n_layers and dim; the catalog reads them as layers and hidden_size.
    assert (items["tiny-distilbert"]["layers"], items["tiny-distilbert"]["hidden_size"]) == (2, 32)


def test_a_job_on_an_unsupported_model_type_is_a_422_naming_it_and_creates_nothing(client, headers):
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))}).json()
    spec = {"base_model": "tiny-gpt2", "data": {"train": train["id"]}}
    response = client.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 422
    message = str(response.json())
    assert "base_model" in message and "'gpt2'" in message
    assert f"supported model types: {', '.join(supported())}" in message
    assert client.get("/v1/jobs", headers=headers).json()["total"] == 0
    members = {"members": [{"base_model": "tiny-bert"}, {"base_model": "tiny-gpt2"}]}
    response = client.post("/v1/jobs", headers=headers, json={"data": {"train": train["id"]}, "ensemble": members})
    assert response.status_code == 422 and "ensemble.members.1.base_model" in str(response.json())


def test_a_job_on_another_supported_family_is_accepted(client, headers):
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))}).json()
    spec = {"base_model": "tiny-distilbert", "recipe": "lora", "data": {"train": train["id"]}}
    response = client.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text

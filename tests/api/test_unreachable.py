"""A database or queue that does not answer gives a quick 503 that says so, never a hung request,
and creates nothing. Real servers that are not there: closed ports on loopback."""

import time

from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.conftest import build_settings
from tests.utils.data import as_csv, sentiment
from tests.utils.services import auth, free_port, new_key


def test_an_unreachable_database_is_a_quick_503(tmp_path):
    down = build_settings(tmp_path / "var", {}).model_copy(
        update={
            "database_url": f"postgresql+psycopg://thaw@127.0.0.1:{free_port()}/thaw",
            "sweep_interval_seconds": 0,
        }
    )
    with TestClient(create_app(down)) as client:
        started = time.monotonic()
        response = client.get("/v1/datasets", headers=auth("thaw_any"))
        assert time.monotonic() - started < 10
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert response.json()["detail"] == "the database is unreachable; try again shortly"
        health = client.get("/healthz")
        assert health.status_code == 503


def test_an_unreachable_queue_is_a_503_and_the_job_is_not_created(tmp_path, tiny_model_dir):
    broken = build_settings(
        tmp_path / "other", {"tiny-bert": tiny_model_dir}, broker_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    headers = auth(new_key(broken))
    with TestClient(create_app(broken)) as client:
        data = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(20)))}).json()
        response = client.post(
            "/v1/jobs", headers=headers, json={"base_model": "tiny-bert", "data": {"train": data["id"]}}
        )
        assert response.status_code == 503
        assert (
            "the job queue is unreachable" in response.json()["detail"]
            and "nothing was created" in response.json()["detail"]
        )
        assert client.get("/v1/jobs", headers=headers).json()["total"] == 0

"""A real worker trains (or fails) jobs that name a webhook; the API's own delivery thread announces
their end to a real receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Service, backend_service, broken_model
from tests.utils.data import as_csv, sentiment
from tests.utils.services import wait_for
from tests.utils.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

SECRET = "whsec-e2e-51c0"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver(answers=[500]) as running:  # the first POST fails: one retry
        yield running


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp(f"webhooks-{request.param}")
    models = {"tiny-bert": tiny_model_dir, "broken": broken_model(root / "broken")}
    yield from backend_service(
        request,
        root,
        models,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_secret=SECRET,
        webhook_poll_seconds=0.1,
        webhook_backoff_seconds=0.2,
    )


def test_a_succeeded_and_a_failed_job_are_announced(service: Service, receiver: Receiver):
    receiver.requests.clear()
    receiver.answers[:] = [500]
    client, headers = service.client, service.headers
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(60)))}).json()
    test = client.post("/v1/datasets", headers=headers, files={"file": ("s.csv", as_csv(sentiment(20, seed=3)))})
    hook = {"url": receiver.url("/thaw")}
    jobs = {}
    for base_model in ("tiny-bert", "broken"):
        spec = {
            "base_model": base_model,
            "recipe": "fine_tuning",  # 30 rows per class: auto would pick setfit, which keeps no validation
            "data": {"train": train["id"], "test": test.json()["id"]},
            "training": {"epochs": 1},
            "webhook": hook,
        }
        response = client.post("/v1/jobs", headers=headers, json=spec)
        assert response.status_code == 202, response.text
        jobs[base_model] = response.json()["id"]
    succeeded, failed = service.wait(jobs["tiny-bert"]), service.wait(jobs["broken"])
    assert succeeded["status"] == "succeeded" and failed["status"] == "failed"

    # Three POSTs: both jobs' events, one of them twice (the receiver failed the first POST).
    wait_for(
        lambda: sum(post.payload["attempt"] == 1 for post in receiver.requests) == 2 and len(receiver.requests) == 3
    )
    assert all(post.signed_by(SECRET) for post in receiver.requests)
    last = {post.payload["job"]["id"]: post.payload for post in receiver.requests}
    announced = last[succeeded["id"]]
    assert announced["event"] == "job.succeeded"
    assert announced["job"]["model_id"] == succeeded["model_id"] is not None
    metrics = succeeded["metrics"]
    assert announced["job"]["metrics"] == {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "test": {"accuracy": metrics["test"]["accuracy"], "macro_f1": metrics["test"]["macro_f1"]},
    }
    assert announced["job"]["error"] is None
    announced = last[failed["id"]]
    assert announced["event"] == "job.failed" and announced["job"]["error"] == failed["error"]
    assert announced["job"]["model_id"] is None

    for job_id in jobs.values():
        kinds = wait_for(lambda job_id=job_id: _delivered_kinds(service, job_id))
        assert kinds[-1] == "webhook_delivered"


def _delivered_kinds(service: Service, job_id: str) -> list[str] | None:
    items = service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"]
    kinds = [event["kind"] for event in items if event["kind"].startswith("webhook_")]
    return kinds if kinds and kinds[-1] == "webhook_delivered" else None

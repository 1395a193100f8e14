"""Per-key rate limits on job submission and prediction: 429 with Retry-After, per key, and refilled
with time."""

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.api.rate_limits import TokenBuckets
from tests.utils.data import as_csv, sentiment
from tests.utils.services import auth, new_key


@pytest.fixture
def limited(settings):
    strict = settings.model_copy(update={"job_submissions_per_minute": 2, "predict_requests_per_minute": 3})
    with TestClient(create_app(strict)) as client:
        yield client, strict


def test_job_submissions_past_the_limit_are_429_with_retry_after_and_create_nothing(limited):
    client, settings = limited
    headers, same_tenant = auth(new_key(settings, "acme")), auth(new_key(settings, "acme"))
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(20)))}).json()
    spec = {"base_model": "tiny-bert", "data": {"train": train["id"]}}
    assert [client.post("/v1/jobs", headers=headers, json=spec).status_code for _ in range(2)] == [202, 202]
    refused = client.post("/v1/jobs", headers=headers, json=spec)
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("too many jobs requests for this API key; retry in ")
    assert 1 <= int(refused.headers["Retry-After"]) <= 30  # one token comes back every 30 s
    assert client.get("/v1/jobs", headers=headers).json()["total"] == 2
    assert client.post("/v1/jobs", headers=same_tenant, json=spec).status_code == 202  # per key, not per tenant


def test_predict_requests_past_the_limit_are_429_and_a_bad_key_is_still_401(limited):
    client, settings = limited
    headers = auth(new_key(settings, "acme"))
    url = "/v1/models/mdl_none/predict"
    assert [client.post(url, headers=headers, json={"inputs": ["a"]}).status_code for _ in range(3)] == [404] * 3
    refused = client.post(url, headers=headers, json={"inputs": ["a"]})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 20  # 3 a minute
    assert client.post(url, headers=auth("thaw_wrong"), json={"inputs": ["a"]}).status_code == 401


def test_buckets_refill_with_time():
    clock = [100.0]  # a clock the test moves, instead of waiting
    buckets = TokenBuckets(per_minute=6, clock=lambda: clock[0])  # one token every 10 s, bursts of 6
    assert [buckets.take("k") for _ in range(6)] == [0.0] * 6
    assert buckets.take("k") == pytest.approx(10.0)
    clock[0] += 5
    assert buckets.take("k") == pytest.approx(5.0)
    clock[0] += 5
    assert buckets.take("k") == 0.0 and buckets.take("other") == 0.0


def test_one_application_at_32_connections_is_not_refused_by_the_default_limit(tmp_path, tiny_model_dir):
    """The default per-key limit (30,000 a minute, in bursts of as many) sits above what one API
    process serves on this machine (218 requests/s at 32 clients, docs/benchmarks.md#serving): one
    application with one key and 32 connections, as fast as they go, gets no 429."""
    import threading

    import httpx

    from tests.api.test_metrics import publish, tenant_id
    from tests.conftest import build_settings
    from tests.utils.live_api import live_api
    from tests.utils.trained import train_and_save

    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    assert settings.predict_requests_per_minute == 30_000
    headers = auth(new_key(settings, "acme"))
    model = train_and_save(tiny_model_dir, {"recipe": "feature_extraction"}, tmp_path / "model")
    publish(settings, tenant_id(settings, "acme"), "mdl_app", model)
    statuses: list[int] = []
    with live_api(settings) as url:

        def client() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                for _ in range(50):  # 32 x 50 = 1,600 requests: past the old default's burst of 1,200
                    response = http.post("/v1/models/mdl_app/predict", json={"inputs": ["a great movie"]})
                    statuses.append(response.status_code)

        threads = [threading.Thread(target=client) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(statuses) == 1_600 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}

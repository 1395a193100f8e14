"""Webhooks against a real receiver on loopback, on SQLite and PostgreSQL: the signature, retries with
backoff, the job's events, refused URLs, and replicas delivering side by side.

Most tests run the API without its delivery thread (webhook_poll_seconds 0) and drive
enqueue_finished / deliver_due with explicit clocks, so that backoff is checked without timing;
test_a_cancelled_job_is_announced_by_the_apis_own_thread runs the thread itself."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api.main import create_app
from app.config import Settings
from app.db.models import Job, WebhookDelivery, utcnow
from app.db.session import session_scope
from app.services.webhook_signatures import signature_header, verify
from app.services.webhooks import deliver_due, enqueue_finished
from tests.utils.data import as_csv, sentiment
from tests.utils.services import free_port, wait_for
from tests.utils.webhook_receiver import Receiver

SECRET = "whsec-test-8d1f"
WEBHOOKS = {
    "webhook_allowed_hosts": ["127.0.0.1"],
    "webhook_secret": SECRET,
    "webhook_backoff_seconds": 0.2,
    "webhook_max_attempts": 3,
    "webhook_timeout_seconds": 5.0,
    "webhook_poll_seconds": 0,  # deliveries are driven by the test
}


@pytest.fixture
def hooked(settings: Settings) -> Settings:
    return settings.model_copy(update=WEBHOOKS)


@pytest.fixture
def api(hooked: Settings):
    with TestClient(create_app(hooked)) as client:
        yield client


@pytest.fixture
def train_id(api, headers):
    response = api.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    return response.json()["id"]


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def http():
    with httpx.Client() as client:
        yield client


def cancelled_job(client, headers, train_id, url: str, **spec) -> str:
    """A job with a webhook to `url`, submitted and cancelled while queued: a finished job."""
    body = {"base_model": "tiny-bert", "data": {"train": train_id}, "webhook": {"url": url}, **spec}
    response = client.post("/v1/jobs", headers=headers, json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=headers).json()["status"] == "cancelled"
    return job_id


def enqueue(settings: Settings, now=None) -> list[int]:
    with session_scope(settings.resolved_database_url) as session:
        return enqueue_finished(session, now)


def delivery_of(settings: Settings, job_id: str) -> WebhookDelivery:
    with session_scope(settings.resolved_database_url) as session:
        return session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)).one()


def webhook_events(client, headers, job_id: str) -> list[dict]:
    items = client.get(f"/v1/jobs/{job_id}/events", headers=headers).json()["items"]
    return [event for event in items if event["kind"].startswith("webhook_")]


def test_a_finished_job_gets_one_signed_post(api, headers, hooked, train_id, receiver, http):
    job_id = cancelled_job(api, headers, train_id, receiver.url("/hooks/thaw?source=test"))
    assert api.get(f"/v1/jobs/{job_id}", headers=headers).json()["spec"]["webhook"] == {
        "url": receiver.url("/hooks/thaw?source=test")
    }
    [delivery_id] = enqueue(hooked)
    assert enqueue(hooked) == []  # one delivery per job
    done = deliver_due(hooked.resolved_database_url, http, hooked)
    assert done.delivered == [delivery_id] and not done.retrying and not done.given_up

    [post] = receiver.requests
    assert post.path == "/hooks/thaw?source=test"
    assert post.headers["thaw-event"] == "job.cancelled" and post.headers["thaw-delivery"] == str(delivery_id)
    assert post.headers["content-type"] == "application/json"
    timestamp, _ = post.signature()
    assert post.signed_by(SECRET) and abs(time.time() - timestamp) < 60
    payload = post.payload
    assert payload["event"] == "job.cancelled" and payload["delivery"] == delivery_id and payload["attempt"] == 1
    job = payload["job"]
    assert job["id"] == job_id and job["status"] == "cancelled"
    stored = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["recipe"] == stored["spec"]["recipe"] == "setfit"  # auto, on a few rows per class
    assert job["base_model"] == "tiny-bert"
    assert job["model_id"] is None and job["error"] is None and job["metrics"] is None
    assert job["finished_at"] == api.get(f"/v1/jobs/{job_id}", headers=headers).json()["finished_at"].replace(
        "Z", "+00:00"
    )

    row = delivery_of(hooked, job_id)
    assert row.status == "delivered" and row.attempts == 1 and row.delivered_at is not None
    [event] = webhook_events(api, headers, job_id)
    assert event["kind"] == "webhook_delivered"
    assert event["data"] == {
        "delivery_id": delivery_id,
        "attempt": 1,
        "url": receiver.url("/hooks/thaw?source=test"),
        "event": "job.cancelled",
        "status_code": 200,
    }
    assert deliver_due(hooked.resolved_database_url, http, hooked, utcnow() + timedelta(hours=1)).delivered == []
    assert len(receiver.requests) == 1


def test_verify_refuses_a_tampered_body_a_wrong_secret_and_an_old_timestamp(
    api, headers, hooked, train_id, receiver, http
):
    cancelled_job(api, headers, train_id, receiver.url())
    enqueue(hooked)
    deliver_due(hooked.resolved_database_url, http, hooked)
    [post] = receiver.requests
    header, (timestamp, _) = post.headers["thaw-signature"], post.signature()
    assert verify(SECRET, header, post.body)
    assert verify(SECRET, header, post.body.decode())  # the body as text works too
    assert not verify(SECRET, header, post.body.replace(b'"cancelled"', b'"succeeded"'))
    assert not verify("another-secret", header, post.body)
    assert verify(SECRET, header, post.body, now=timestamp + 299)
    assert not verify(SECRET, header, post.body, now=timestamp + 301)  # a replay, 5 minutes on
    old = int(time.time()) - 301
    assert not verify(SECRET, signature_header(SECRET, old, post.body), post.body)  # validly signed, too old
    assert not verify(SECRET, "v1=" + post.signature()[1], post.body)  # no timestamp
    assert not verify(SECRET, "", post.body)
    assert not verify(SECRET, f"t={timestamp},v1=é", post.body)  # a forged non-ASCII value is refused, not a crash


def test_failures_are_retried_with_doubling_backoff(api, headers, hooked, train_id, http):
    with Receiver(answers=[500, 503]) as receiver:
        job_id = cancelled_job(api, headers, train_id, receiver.url())
        t0 = utcnow()
        [delivery_id] = enqueue(hooked, now=t0)
        url = hooked.resolved_database_url

        def at(seconds: float):
            return deliver_due(url, http, hooked, t0 + timedelta(seconds=seconds))

        assert at(0).retrying == [delivery_id]
        assert at(0.19).retrying == [] and len(receiver.requests) == 1  # backoff 0.2 s
        assert at(0.2).retrying == [delivery_id]
        assert at(0.59).retrying == [] and len(receiver.requests) == 2  # then 0.4 s after the second
        assert at(0.6).delivered == [delivery_id]
        assert at(60).delivered == []

    assert len(receiver.requests) == 3
    assert [post.payload["attempt"] for post in receiver.requests] == [1, 2, 3]
    assert {post.payload["delivery"] for post in receiver.requests} == {delivery_id}
    assert all(post.signed_by(SECRET) for post in receiver.requests)
    row = delivery_of(hooked, job_id)
    assert row.status == "delivered" and row.attempts == 3 and row.last_error is None

    events = webhook_events(api, headers, job_id)
    assert [(e["kind"], e["data"]["attempt"], e["data"]["status_code"]) for e in events] == [
        ("webhook_failed_attempt", 1, 500),
        ("webhook_failed_attempt", 2, 503),
        ("webhook_delivered", 3, 200),
    ]
    retries = [datetime.fromisoformat(e["data"]["next_attempt_at"]) - t0 for e in events[:2]]
    assert retries == [timedelta(seconds=0.2), timedelta(seconds=0.6)]  # gaps of 0.2 s, then 0.4 s


def test_a_receiver_that_always_fails_is_given_up_after_max_attempts(api, headers, hooked, train_id, http):
    with Receiver(always=500) as receiver:
        job_id = cancelled_job(api, headers, train_id, receiver.url())
        t0 = utcnow()
        enqueue(hooked, now=t0)
        for seconds in (0, 0.2, 0.6, 1.4, 3.0, 60):
            deliver_due(hooked.resolved_database_url, http, hooked, t0 + timedelta(seconds=seconds))
    assert len(receiver.requests) == WEBHOOKS["webhook_max_attempts"] == 3
    row = delivery_of(hooked, job_id)
    assert row.status == "failed" and row.attempts == 3 and row.last_error == "HTTP 500"
    events = webhook_events(api, headers, job_id)
    assert [e["kind"] for e in events] == ["webhook_failed_attempt", "webhook_failed_attempt", "webhook_given_up"]
    assert events[-1]["data"]["status_code"] == 500 and "next_attempt_at" not in events[-1]["data"]
    assert "not delivered after 3 attempts: HTTP 500" in events[-1]["message"]


def test_redirects_are_not_followed_and_unreachable_receivers_retried(api, headers, hooked, train_id, http):
    with Receiver(always=307) as receiver:
        redirected = cancelled_job(api, headers, train_id, receiver.url())
        nobody = cancelled_job(api, headers, train_id, f"http://127.0.0.1:{free_port()}/hook")
        enqueue(hooked)
        deliver_due(hooked.resolved_database_url, http, hooked)
    assert [post.path for post in receiver.requests] == ["/hooks/thaw"]  # /elsewhere never asked
    [event] = webhook_events(api, headers, redirected)
    assert event["kind"] == "webhook_failed_attempt" and event["data"]["status_code"] == 307
    [event] = webhook_events(api, headers, nobody)
    assert event["kind"] == "webhook_failed_attempt" and event["data"]["error"].startswith("ConnectError")
    assert "status_code" not in event["data"] and delivery_of(hooked, nobody).last_error.startswith("ConnectError")


def test_a_host_withdrawn_by_the_operator_is_given_up_without_a_post(api, headers, hooked, train_id, receiver, http):
    job_id = cancelled_job(api, headers, train_id, receiver.url())
    enqueue(hooked)
    withdrawn = hooked.model_copy(update={"webhook_allowed_hosts": ["hooks.example.com"]})
    assert deliver_due(hooked.resolved_database_url, http, withdrawn).given_up != []
    assert receiver.requests == []
    [event] = webhook_events(api, headers, job_id)
    assert event["kind"] == "webhook_given_up" and "no longer among the allowed hosts" in event["data"]["error"]


@pytest.mark.parametrize(
    ("webhook", "update", "message"),
    [
        (
            {"url": "https://evil.example.com/hook"},
            {},
            "webhook.url: host 'evil.example.com' is not allowed; webhooks may go to: 127.0.0.1",
        ),
        ({"url": "http://127.0.0.1:9/hook"}, {"webhook_allowed_hosts": []}, "webhook.url: webhooks are off"),
        ({"url": "http://127.0.0.1:9/hook"}, {"webhook_secret": ""}, "operator must set THAW_WEBHOOK_SECRET"),
        ({"url": "ftp://127.0.0.1/hook"}, {}, "webhook.url: URL scheme should be 'http' or 'https'"),
        ({"url": "127.0.0.1/hook"}, {}, "webhook.url: Input should be a valid URL"),
        ({"url": "http://127.0.0.1/hook", "secret": "x"}, {}, "webhook.secret: Extra inputs are not permitted"),
        ("http://127.0.0.1/hook", {}, "webhook: Input should be a valid dictionary"),
    ],
)
def test_refused_webhooks_are_422_name_the_field_and_create_nothing(hooked, headers, webhook, update, message):
    with TestClient(create_app(hooked.model_copy(update=update))) as client:
        train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
        spec = {"base_model": "tiny-bert", "data": {"train": train.json()["id"]}, "webhook": webhook}
        response = client.post("/v1/jobs", headers=headers, json=spec)
        assert response.status_code == 422, response.text
        assert message in response.json()["detail"]
        assert client.get("/v1/jobs", headers=headers).json()["total"] == 0


def test_an_ensemble_has_one_webhook_and_its_members_none(api, headers, train_id, hooked):
    url = "http://127.0.0.1:9/hook"
    base = {"base_model": "tiny-bert", "data": {"train": train_id}, "webhook": {"url": url}}
    response = api.post("/v1/jobs", headers=headers, json={**base, "ensemble": {"size": 2}})
    assert response.status_code == 202, response.text
    spec = api.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()["spec"]
    assert spec["webhook"] == {"url": url} and [m["webhook"] for m in spec["ensemble"]["members"]] == [None, None]
    member_hook = {**base, "ensemble": {"members": [{}, {"webhook": {"url": url}}]}}
    refused = api.post("/v1/jobs", headers=headers, json=member_hook)
    assert refused.status_code == 422 and "ensemble.members.1.webhook: the job's webhook announces" in refused.text
    with session_scope(hooked.resolved_database_url) as session:
        assert session.scalars(select(Job.webhook_url)).all() == [url]


def test_two_dispatchers_post_each_attempt_once(api, headers, hooked, train_id, receiver):
    jobs = [cancelled_job(api, headers, train_id, receiver.url()) for _ in range(4)]
    created: list[list[int]] = []
    delivered: list[list[int]] = []
    start = threading.Barrier(2)

    def replica() -> None:
        start.wait()
        created.append(enqueue(hooked))
        start.wait()
        with httpx.Client() as http:
            delivered.append(deliver_due(hooked.resolved_database_url, http, hooked).delivered)

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(created[0] + created[1]) == sorted({*created[0], *created[1]}) and len(created[0] + created[1]) == 4
    assert sorted(delivered[0] + delivered[1]) == sorted(created[0] + created[1])  # each by one replica only
    assert sorted(post.payload["job"]["id"] for post in receiver.requests) == sorted(jobs)
    for job_id in jobs:
        assert [e["kind"] for e in webhook_events(api, headers, job_id)] == ["webhook_delivered"]


def test_a_cancelled_job_is_announced_by_the_apis_own_thread(hooked, headers):
    live = hooked.model_copy(update={"webhook_poll_seconds": 0.05})
    with Receiver(answers=[500]) as receiver, TestClient(create_app(live)) as client:
        train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
        job_id = cancelled_job(client, headers, train.json()["id"], receiver.url())
        wait_for(lambda: len(webhook_events(client, headers, job_id)) == 2, timeout=30)
        events = webhook_events(client, headers, job_id)
    first, second = receiver.requests
    assert second.at - first.at >= 0.2  # the backoff, at least
    assert [post.payload["event"] for post in receiver.requests] == ["job.cancelled"] * 2
    assert all(post.signed_by(SECRET) for post in receiver.requests)
    assert [(e["kind"], e["data"]["status_code"]) for e in events] == [
        ("webhook_failed_attempt", 500),
        ("webhook_delivered", 200),
    ]

"""GET /v1/jobs/{id}/events as Server-Sent Events: past events, live ones, progress, and the end."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.api import sse
from app.db.models import Job, JobEvent, Tenant
from app.db.session import session_scope
from app.services.jobs import add_event

STREAM = {"Accept": "text/event-stream"}


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(sse, "POLL_SECONDS", 0.05)


class EventStream:
    """An SSE response read on a thread of its own (a stream that never ends must fail the test, not
    hang it), parsed into messages: {"id", "event", "data"} or {"comment"}; None once it has ended."""

    def __init__(self, client: TestClient, url: str, headers: dict[str, str]) -> None:
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.opened: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, args=(client, url, headers), daemon=True).start()
        self.response = self.opened.get(timeout=10)

    def _read(self, client: TestClient, url: str, headers: dict[str, str]) -> None:
        with client.stream("GET", url, headers=headers) as response:
            self.opened.put(response)
            fields: dict[str, Any] = {}
            for line in response.iter_lines():
                if not line:
                    if fields:
                        self.messages.put(fields)
                    fields = {}
                elif line.startswith(":"):
                    self.messages.put({"comment": line[1:].strip()})
                else:
                    name, _, text = line.partition(": ")
                    fields[name] = f"{fields['data']}\n{text}" if name == "data" and "data" in fields else text
        self.messages.put(None)

    def next(self, timeout: float = 10) -> dict[str, Any] | None:
        return self.messages.get(timeout=timeout)

    def until_end(self) -> list[dict[str, Any]]:
        """The messages left, up to the stream's end."""
        rest = []
        while (message := self.next()) is not None:
            rest.append(message)
        return rest


def make_job(url: str, tenant_name: str, status: str, kinds: list[str]) -> tuple[str, list[int]]:
    """A job of the tenant with events of these kinds; its id and the events' ids."""
    with session_scope(url) as session:
        tenant = session.scalar(select(Tenant.id).where(Tenant.name == tenant_name))
        job = Job(tenant_id=tenant, status=status, spec={"recipe": "lora", "base_model": "tiny-bert"})
        session.add(job)
        session.flush()
        for kind in kinds:
            add_event(session, job.id, kind, f"{kind} happened", {"kind": kind})
        job_id = job.id
    with session_scope(url) as session:
        ids = list(session.scalars(select(JobEvent.id).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
    return job_id, ids


def events_of(messages: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(int(m["id"]), m["event"]) for m in messages if "id" in m]


def test_past_events_then_live_ones_then_the_end(client, settings, headers):
    url = settings.resolved_database_url
    job_id, (queued, started) = make_job(url, "acme", "running", ["queued", "started"])
    stream = EventStream(client, f"/v1/jobs/{job_id}/events", {**headers, **STREAM})
    assert stream.response.status_code == 200
    assert stream.response.headers["content-type"].startswith("text/event-stream")

    first, second = stream.next(), stream.next()
    assert events_of([first, second]) == [(queued, "queued"), (started, "started")]
    body = json.loads(second["data"])  # a JobEventPublic, as in the JSON list
    assert set(body) == {"id", "at", "kind", "message", "data"}
    assert (body["id"], body["kind"], body["message"], body["data"]) == (
        started,
        "started",
        "started happened",
        {"kind": "started"},
    )

    with session_scope(url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(progress={"step": 3, "fraction": 0.5}))
    progress = stream.next()
    assert (progress.get("event"), "id" in progress) == ("progress", False)
    assert json.loads(progress["data"]) == {"step": 3, "fraction": 0.5}

    with session_scope(url) as session:
        add_event(session, job_id, "evaluated", "epoch 1 evaluated", {"accuracy": 0.9})
    evaluated = stream.next()
    assert evaluated["event"] == "evaluated" and int(evaluated["id"]) > started

    with session_scope(url) as session:  # the worker's end: status and last event in one transaction
        session.execute(update(Job).where(Job.id == job_id).values(status="succeeded", model_id="mdl_1"))
        add_event(session, job_id, "succeeded", "model mdl_1 saved")
    rest = stream.until_end()
    assert [m.get("event") for m in rest] == ["succeeded", "end"]
    assert int(rest[0]["id"]) > int(evaluated["id"])
    assert json.loads(rest[1]["data"]) == {"status": "succeeded", "model_id": "mdl_1", "error": None}


def test_last_event_id_resumes_after_that_event(client, settings, headers):
    job_id, ids = make_job(settings.resolved_database_url, "acme", "failed", ["queued", "started", "failed"])
    resumed = EventStream(client, f"/v1/jobs/{job_id}/events", {**headers, **STREAM, "Last-Event-ID": str(ids[1])})
    rest = resumed.until_end()
    assert events_of(rest) == [(ids[2], "failed")]
    assert [m["event"] for m in rest] == ["failed", "end"]
    assert json.loads(rest[-1]["data"])["status"] == "failed"

    from_the_start = EventStream(client, f"/v1/jobs/{job_id}/events", {**headers, **STREAM}).until_end()
    assert events_of(from_the_start) == list(zip(ids, ["queued", "started", "failed"], strict=True))


def test_errors_come_before_the_stream_as_json(client, settings, headers, other_headers):
    job_id, _ = make_job(settings.resolved_database_url, "acme", "running", ["queued"])
    path = f"/v1/jobs/{job_id}/events"
    assert client.get(path, headers={**other_headers, **STREAM}).status_code == 404
    assert client.get(path, headers=STREAM).status_code == 401
    bad_resume = client.get(path, headers={**headers, **STREAM, "Last-Event-ID": "soon"})
    assert bad_resume.status_code == 422 and "Last-Event-ID" in bad_resume.json()["detail"]
    beyond_any_id = client.get(path, headers={**headers, **STREAM, "Last-Event-ID": "9" * 23})  # past a BIGINT
    assert beyond_any_id.status_code == 422 and "Last-Event-ID" in beyond_any_id.json()["detail"]
    superscript = client.get(path, headers={**headers, **STREAM, "Last-Event-ID": "²".encode("latin-1")})
    assert superscript.status_code == 422 and "Last-Event-ID" in superscript.json()["detail"]
    as_json = client.get(path, headers=headers)  # without the Accept header: the JSON list, as ever
    assert as_json.headers["content-type"] == "application/json"
    assert [e["kind"] for e in as_json.json()["items"]] == ["queued"]


def test_a_client_that_leaves_ends_the_stream(client, settings, headers, monkeypatch):
    job_id, [queued] = make_job(settings.resolved_database_url, "acme", "running", ["queued"])
    reads = []

    def counted(*args):
        reads.append(args)
        return read_job_state(*args)

    read_job_state = sse.read_job_state
    monkeypatch.setattr(sse, "read_job_state", counted)
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**headers, **STREAM}) as response:
        assert next(response.iter_lines()) == f"id: {queued}"
    left = len(reads)
    time.sleep(0.3)  # six polls' time
    assert len(reads) <= left + 1


def test_an_event_committed_after_a_later_id_is_still_sent(settings, headers):
    """On PostgreSQL ids are handed out at insert and commits may land in another order: the stream
    asks for what it has not sent, not for what is past the last id it sent."""
    url = settings.resolved_database_url
    job_id, (first, late, last) = make_job(url, "acme", "running", ["queued", "paused", "started"])
    state = sse.read_job_state(url, job_id, 0, frozenset({first, last}))
    assert [event.id for event in state.events] == [late]
    assert sse.read_job_state(url, job_id, late, frozenset()).events[0].id == last


# ---- the message stream alone ----------------------------------------------------------------------------


def running_job(events: list[sse.JobEventPublic] | None = None) -> sse.JobState:
    return sse.JobState("running", None, None, None, events or [])


def collect(messages, limit: int) -> list[str]:
    async def take() -> list[str]:
        taken = []
        async for message in messages:
            taken.append(message)
            if len(taken) == limit:
                break
        return taken

    return asyncio.run(take())


def test_a_quiet_stream_sends_keep_alive_comments():
    async def read(_after: int, _sent: frozenset[int]) -> sse.JobState:
        return running_job()

    async def connected() -> bool:
        return False

    messages = sse.job_messages(read, 0, connected, poll_seconds=0.01, keep_alive_seconds=0.03)
    assert collect(messages, 2) == [sse.KEEP_ALIVE, sse.KEEP_ALIVE]


def test_the_stream_stops_when_the_client_has_gone():
    reads = []

    async def read(after: int, _sent: frozenset[int]) -> sse.JobState:
        reads.append(after)
        return running_job()

    async def gone() -> bool:
        return len(reads) >= 2

    assert collect(sse.job_messages(read, 7, gone, poll_seconds=0.01), 10) == []
    assert reads == [7, 7]


def test_a_message_spreads_multi_line_data_over_data_lines():
    assert sse.message("a\nb", event="note", event_id=3) == "id: 3\nevent: note\ndata: a\ndata: b\n\n"

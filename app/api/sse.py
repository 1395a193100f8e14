"""A job's events as Server-Sent Events (`GET /v1/jobs/{id}/events` with `Accept: text/event-stream`).

The stream sends every event after `Last-Event-ID` (all of them without it), then each new one as the
worker writes it, `progress` whenever the job's progress changes, and `end` once the job has finished
and every event before its end was sent:

    id: 42
    event: started
    data: {"id": 42, "at": "...", "kind": "started", "message": "...", "data": {...}}

    event: progress
    data: {"stage": "train", "step": 10, "fraction": 0.25, ...}

    event: end
    data: {"status": "succeeded", "model_id": "mdl_...", "error": null}

Only events have an `id:`, so a client that reconnects resumes after the last event it saw. A comment
line (`: keep-alive`) goes out when nothing else did for a while, so proxies keep the connection open.
The database is polled, each time with a session of its own, in the threadpool.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from app.db.models import Job, JobEvent, find
from app.db.session import session_scope
from app.schemas.resources import JobEventPublic
from app.services.errors import InvalidInput
from app.services.jobs import FINISHED

MEDIA_TYPE = "text/event-stream"
POLL_SECONDS = 0.5
KEEP_ALIVE_SECONDS = 15.0


def wants_event_stream(request: Request) -> bool:
    """The caller asked for `text/event-stream` by name (not through `*/*`)."""
    accepted = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == MEDIA_TYPE for part in accepted.split(","))


MAX_EVENT_ID = 2**63 - 1  # a BIGINT: past it, the database cannot even compare


def last_event_id(request: Request) -> int:
    """The id the stream resumes after (`Last-Event-ID`); 0 without one: from the first event."""
    value = request.headers.get("last-event-id", "").strip()
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EVENT_ID:  # '²' is a digit to isdigit
        raise InvalidInput(f"Last-Event-ID: {value!r} is not an event id")
    return int(value)


def message(data: str, *, event: str | None = None, event_id: int | None = None) -> str:
    """One SSE message; `data` may span lines."""
    lines = [f"id: {event_id}"] if event_id is not None else []
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return "\n".join(lines) + "\n\n"


KEEP_ALIVE = ": keep-alive\n\n"


@dataclass(frozen=True)
class JobState:
    status: str
    progress: dict[str, Any] | None
    model_id: str | None
    error: str | None
    events: list[JobEventPublic]  # not sent yet, oldest first


def read_job_state(database_url: str, job_id: str, after: int, sent: frozenset[int]) -> JobState | None:
    """The job and its events after `after` that are not in `sent`; None once the job is gone.

    The status is read first: a job that has finished wrote its last events with its status, so they
    are in the read after. Events are told apart by id rather than taken past the last id sent: on
    PostgreSQL two writers (the worker, a pause request) may commit their events out of id order."""
    with session_scope(database_url) as session:
        job = find(session, Job, job_id)
        if job is None:
            return None
        state = (job.status, job.progress, job.model_id, job.error)
        ids = session.scalars(select(JobEvent.id).where(JobEvent.job_id == job_id, JobEvent.id > after))
        new = sorted(set(ids) - sent)
        query = select(JobEvent).where(JobEvent.id.in_(new)).order_by(JobEvent.id)
        events = [JobEventPublic.model_validate(event) for event in session.scalars(query)] if new else []
    return JobState(*state, events=events)


ReadState = Callable[[int, frozenset[int]], Awaitable[JobState | None]]


async def job_messages(
    read: ReadState,
    after: int,
    disconnected: Callable[[], Awaitable[bool]],
    poll_seconds: float = POLL_SECONDS,
    keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
) -> AsyncIterator[str]:
    """The job's SSE messages, its events after `after`, until it ends (or disappears, or the client goes)."""
    sent: set[int] = set()
    sent_progress: dict[str, Any] | None = None
    last_sent = time.monotonic()
    while True:
        state = await read(after, frozenset(sent))
        if state is None:
            return
        out = []
        for event in state.events:
            out.append(message(event.model_dump_json(), event=event.kind, event_id=event.id))
            sent.add(event.id)
        if state.progress is not None and state.progress != sent_progress:
            out.append(message(json.dumps(state.progress), event="progress"))
            sent_progress = state.progress
        if state.status in FINISHED:
            end = {"status": state.status, "model_id": state.model_id, "error": state.error}
            yield "".join(out) + message(json.dumps(end), event="end")
            return
        if out:
            yield "".join(out)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= keep_alive_seconds:
            yield KEEP_ALIVE
            last_sent = time.monotonic()
        await asyncio.sleep(poll_seconds)
        if await disconnected():
            return


def job_event_stream(request: Request, database_url: str, job_id: str, after: int) -> StreamingResponse:
    """The response that streams a job's events; the caller has checked that the job is theirs. It
    also ends when the API is stopping (app/api/stopping.py): the client reconnects elsewhere."""

    async def read(since: int, sent: frozenset[int]) -> JobState | None:
        return await run_in_threadpool(read_job_state, database_url, job_id, since, sent)

    async def gone() -> bool:
        return request.app.state.stopping.is_set() or await request.is_disconnected()

    return StreamingResponse(
        job_messages(read, after, gone, POLL_SECONDS, KEEP_ALIVE_SECONDS),
        media_type=MEDIA_TYPE,
        # No caching, and no buffering by a proxy (nginx) that would hold the events back.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

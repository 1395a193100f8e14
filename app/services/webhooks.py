"""Webhooks: a signed POST announcing a job's end, retried with backoff, recorded in the job's events.

A finished job with a webhook gets one `WebhookDelivery` row (enqueue_finished); API replicas then
deliver due rows (deliver_due). Every step is a conditional write on the row, so any number of
replicas may run both: the unique job_id makes a second row impossible, and an attempt is claimed by
moving its due time forward past a lease, so two replicas never POST the same attempt. Delivery is
at least once: a replica that dies mid-POST leaves the attempt to be made again once its lease ends,
so receivers should ignore a `Thaw-Delivery` id they have already handled.

The signature is app/services/webhook_signatures.py's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Job, WebhookDelivery, utcnow
from app.db.session import session_scope
from app.services.jobs import FINISHED, add_event
from app.services.webhook_policy import WebhookPolicy
from app.services.webhook_signatures import SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)

EVENT_HEADER = "Thaw-Event"
DELIVERY_HEADER = "Thaw-Delivery"
USER_AGENT = "Thaw-Webhooks/1"
ENQUEUE_BATCH = 100  # finished jobs given a delivery per pass; the rest wait for the next pass
DELIVER_BATCH = 50  # due deliveries attempted per pass


def event_of(status: str) -> str:
    return f"job.{status}"


def metrics_summary(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline numbers only: the whole report (per class, per slice, ...) is at GET /v1/jobs/{id}."""
    if not metrics:
        return None
    headline = ("accuracy", "macro_f1", "micro_f1")
    summary = {key: metrics[key] for key in headline if key in metrics}
    test = metrics.get("test")
    if isinstance(test, dict):
        summary["test"] = {key: test[key] for key in headline if key in test}
    return summary


def payload_of(job: Job) -> dict[str, Any]:
    """What a delivery announces, fixed when the job finished; `delivery` and `attempt` join it at each POST."""
    return {
        "event": event_of(job.status),
        "job": {
            "id": job.id,
            "status": job.status,
            "recipe": job.spec.get("recipe"),
            "base_model": job.spec.get("base_model"),
            "model_id": job.model_id,
            "error": job.error,
            "metrics": metrics_summary(job.metrics),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        },
    }


def request_body(payload: dict[str, Any], delivery_id: int, attempt: int) -> bytes:
    return json.dumps({**payload, "delivery": delivery_id, "attempt": attempt}, separators=(",", ":")).encode()


def request_headers(secret: str, event: str, delivery_id: int, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(delivery_id),
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }


# ---- a delivery per finished job ------------------------------------------------------------------


def enqueue_finished(session: Session, now: datetime | None = None) -> list[int]:
    """A pending delivery, due at once, for every finished job with a webhook that has none yet;
    the ids created. Another replica creating the same one first is harmless (unique job_id)."""
    now = now or utcnow()
    undelivered = (
        select(Job)
        .where(Job.webhook_url.is_not(None), Job.status.in_(FINISHED))
        .where(~exists().where(WebhookDelivery.job_id == Job.id))
        .order_by(Job.finished_at)
        .limit(ENQUEUE_BATCH)
    )
    rows = [
        {"job_id": job.id, "url": job.webhook_url, "event": event_of(job.status), "payload": payload_of(job)}
        for job in session.scalars(undelivered)
    ]
    created = []
    for row in rows:
        delivery = WebhookDelivery(**row, status="pending", attempts=0, next_attempt_at=now)
        session.add(delivery)
        try:
            session.commit()  # one row per transaction: a lost race spoils only its own
        except IntegrityError:
            session.rollback()
            continue
        created.append(delivery.id)
    return created


# ---- delivering -----------------------------------------------------------------------------------


@dataclass
class Claim:
    """One attempt of one delivery, held by this replica until `leased_until`."""

    id: int
    job_id: str
    url: str
    event: str
    payload: dict[str, Any]
    attempt: int
    leased_until: datetime


@dataclass
class Outcome:
    status_code: int | None = None
    error: str | None = None
    final: bool = False  # no retry can succeed (the host is no longer allowed)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def reason(self) -> str:
        return self.error or f"HTTP {self.status_code}"


@dataclass
class Delivered:
    """What one pass of deliver_due did, by delivery id."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    given_up: list[int] = field(default_factory=list)


def lease_seconds(settings: Settings) -> float:
    # httpx's timeout bounds each phase of a request (connect, write, read, pool), not the whole.
    return 4 * settings.webhook_timeout_seconds + 30


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Wait after the `attempts`-th failed attempt: the base, doubled at every retry."""
    return settings.webhook_backoff_seconds * 2 ** (attempts - 1)


def deliver_due(database_url: str, client: httpx.Client, settings: Settings, now: datetime | None = None) -> Delivered:
    """Make one attempt of every delivery due that no other replica holds. `now` stops the clock (tests
    drive backoff with it); by default every lease and retry time is read from the clock as it is taken,
    since a pass of slow receivers may last minutes."""
    clock = utcnow if now is None else lambda: now
    with session_scope(database_url) as session:
        due = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= clock())
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(DELIVER_BATCH)
        ).all()
    policy = WebhookPolicy.from_settings(settings)
    result = Delivered()
    for delivery_id, due_at in due:
        claim = claim_attempt(database_url, delivery_id, due_at, clock() + timedelta(seconds=lease_seconds(settings)))
        if claim is None:
            continue  # another replica took it
        outcome = post(client, claim, settings, policy)
        kind = record(database_url, claim, outcome, settings, clock())
        if kind:
            getattr(result, kind).append(claim.id)
    return result


def claim_attempt(database_url: str, delivery_id: int, due_at: datetime, leased_until: datetime) -> Claim | None:
    """Take the delivery's next attempt, unless another replica took it since we read `due_at`."""
    with session_scope(database_url) as session:
        taken = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at == due_at,
            )
            .values(next_attempt_at=leased_until)
        ).rowcount
        if not taken:
            return None
        row = session.get(WebhookDelivery, delivery_id)
        return Claim(row.id, row.job_id, row.url, row.event, row.payload, row.attempts + 1, leased_until)


def post(client: httpx.Client, claim: Claim, settings: Settings, policy: WebhookPolicy) -> Outcome:
    """POST the signed payload once; redirects are not followed (they count as failures)."""
    if not policy.allows(claim.url):
        return Outcome(error="its host is no longer among the allowed hosts", final=True)
    body = request_body(claim.payload, claim.id, claim.attempt)
    headers = request_headers(settings.webhook_secret, claim.event, claim.id, body, int(time.time()))
    try:
        # Streamed and left unread: a receiver's answer body is of no interest, whatever its size.
        with client.stream(
            "POST",
            claim.url,
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
        ) as response:
            return Outcome(status_code=response.status_code)
    except Exception as error:  # any failure to get an answer is a failed attempt, retried
        return Outcome(error=f"{type(error).__name__}: {error}"[:500])


def record(database_url: str, claim: Claim, outcome: Outcome, settings: Settings, now: datetime) -> str:
    """Write the attempt's outcome and its job event, if the claim is still ours; the outcome's kind
    ('delivered', 'retrying' or 'given_up'), or '' when the lease ran out and another replica took over.
    `now`: when the attempt ended; a retry is due a backoff after it."""
    attempt = claim.attempt
    data: dict[str, Any] = {"delivery_id": claim.id, "attempt": attempt, "url": claim.url, "event": claim.event}
    data.update({"status_code": outcome.status_code} if outcome.error is None else {"error": outcome.error})
    if outcome.ok:
        kind, values = "delivered", {"status": "delivered", "delivered_at": now, "last_error": None}
        event = ("webhook_delivered", f"{claim.event} delivered to {claim.url} (attempt {attempt})")
    elif outcome.final or attempt >= settings.webhook_max_attempts:
        kind, values = "given_up", {"status": "failed", "last_error": outcome.reason}
        event = ("webhook_given_up", f"{claim.event} not delivered after {attempt} attempts: {outcome.reason}")
    else:
        next_at = now + timedelta(seconds=backoff_seconds(settings, attempt))
        kind, values = "retrying", {"next_attempt_at": next_at, "last_error": outcome.reason}
        event = ("webhook_failed_attempt", f"{claim.event} attempt {attempt} failed: {outcome.reason}; retrying")
        data["next_attempt_at"] = next_at.isoformat()
    with session_scope(database_url) as session:
        held = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claim.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at == claim.leased_until,
            )
            .values(attempts=attempt, **values)
        ).rowcount
        if not held:
            return ""
        add_event(session, claim.job_id, event[0], event[1], data)
    return kind


# ---- the API's delivery thread ----------------------------------------------------------------------


class WebhookDispatcher:
    """Every `webhook_poll_seconds`, from a thread of the API process: deliveries for newly finished
    jobs, then one attempt of each due delivery."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = httpx.Client(follow_redirects=False, timeout=settings.webhook_timeout_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.webhook_timeout_seconds + 5)
        if not self._thread.is_alive():  # else a POST is still under way: closing would fail it
            self._client.close()

    def run_once(self) -> Delivered:
        url = self.settings.resolved_database_url
        with session_scope(url) as session:
            enqueue_finished(session)
        return deliver_due(url, self._client, self.settings)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.webhook_poll_seconds):
            try:
                done = self.run_once()
                if done.given_up:
                    log.warning("webhook deliveries given up: %s", done.given_up)
            except Exception:  # a database blip must not end the deliveries
                log.exception("webhook pass failed")


def start_dispatcher(settings: Settings) -> WebhookDispatcher | None:
    """The API's delivery thread, where this replica delivers (webhook_poll_seconds > 0) and webhooks are on."""
    policy = WebhookPolicy.from_settings(settings)
    if settings.webhook_poll_seconds <= 0 or not policy.allowed_hosts:
        return None
    if not policy.can_sign:
        # Jobs naming a webhook are refused (422) until the operator sets the secret; nothing to deliver.
        log.error("webhooks are allowed but THAW_WEBHOOK_SECRET is empty: no webhook is accepted or delivered")
        return None
    dispatcher = WebhookDispatcher(settings)
    dispatcher.start()
    return dispatcher

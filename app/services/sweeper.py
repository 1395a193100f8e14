"""Jobs whose worker was lost: a `running` job whose heartbeat stopped is queued again, to go on
from its last checkpoint on the next worker, or failed once it has used its attempts.

Brokers lose track of long tasks in known ways (a killed worker's message is never redelivered on
some transports; Redis redelivers after its visibility timeout; a task that kills its process can be
redelivered forever, celery#9082). The database row, not the broker, says whether a job is alive.
Every change is a conditional UPDATE on the stale row, so any number of API replicas may sweep.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from app.db.models import Job, ModelRun, utcnow
from app.db.session import session_scope
from app.services.jobs import Enqueue, add_event, compute_of
from app.storage.store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass
class Swept:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def sweep(
    database_url: str,
    store: ArtifactStore,
    enqueue: Enqueue,
    *,
    timeout_seconds: float,
    max_attempts: int,
) -> Swept:
    cutoff = utcnow() - timedelta(seconds=timeout_seconds)
    with session_scope(database_url) as session:
        stale = session.execute(
            select(Job.id, Job.attempts, Job.spec).where(Job.status == "running", Job.heartbeat_at < cutoff)
        ).all()
    swept = Swept()
    computes = {job_id: compute_of(spec) for job_id, _, spec in stale}  # its route decides where it goes again
    for job_id, attempts, _ in stale:
        lost = (Job.id == job_id, Job.status == "running", Job.attempts == attempts, Job.heartbeat_at < cutoff)
        silent = f"no heartbeat from attempt {attempts} for over {timeout_seconds:g}s"
        with session_scope(database_url) as session:
            if attempts >= max_attempts:
                reason = f"WorkerLost: {silent}, and the job has had its {max_attempts} attempts"
                if session.execute(
                    update(Job).where(*lost).values(status="failed", error=reason, finished_at=utcnow())
                ).rowcount:
                    add_event(session, job_id, "failed", reason)
                    swept.failed.append(job_id)
                continue
            if session.execute(update(Job).where(*lost).values(status="queued")).rowcount:
                add_event(session, job_id, "requeued", f"{silent}; queued again to resume from its last checkpoint")
                swept.requeued.append(job_id)
    for job_id in swept.failed:
        store.delete_checkpoints(job_id)
    for job_id in swept.requeued:
        try:
            enqueue(job_id, computes[job_id])
        except Exception:  # the broker is down: leave the job to the next sweep
            log.exception("could not enqueue job %s again", job_id)
            with session_scope(database_url) as session:
                session.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(status="running"))
    return swept


def sweep_runs(
    database_url: str, enqueue: Callable[[str], None], *, timeout_seconds: float, max_attempts: int
) -> Swept:
    """The same for model runs (evaluations, batch predictions): one whose heartbeat stopped runs
    again from its first row (it keeps nothing between chunks), or fails once out of attempts."""
    cutoff = utcnow() - timedelta(seconds=timeout_seconds)
    with session_scope(database_url) as session:
        stale = session.execute(
            select(ModelRun.id, ModelRun.attempts).where(ModelRun.status == "running", ModelRun.heartbeat_at < cutoff)
        ).all()
    swept = Swept()
    for run_id, attempts in stale:
        lost = (
            ModelRun.id == run_id,
            ModelRun.status == "running",
            ModelRun.attempts == attempts,
            ModelRun.heartbeat_at < cutoff,  # a beat since the select: the run is alive after all
        )
        silent = f"no heartbeat from attempt {attempts} for over {timeout_seconds:g}s"
        with session_scope(database_url) as session:
            if attempts >= max_attempts:
                reason = f"WorkerLost: {silent}, and the run has had its {max_attempts} attempts"
                if session.execute(
                    update(ModelRun).where(*lost).values(status="failed", error=reason, finished_at=utcnow())
                ).rowcount:
                    swept.failed.append(run_id)
            elif session.execute(update(ModelRun).where(*lost).values(status="queued")).rowcount:
                swept.requeued.append(run_id)
    for run_id in swept.requeued:
        try:
            enqueue(run_id)
        except Exception:  # the broker is down: leave the run to the next sweep
            log.exception("could not enqueue model run %s again", run_id)
            with session_scope(database_url) as session:
                queued = (ModelRun.id == run_id, ModelRun.status == "queued")
                session.execute(update(ModelRun).where(*queued).values(status="running"))
    return swept


class Sweeper:
    """Sweeps every `interval` seconds from a thread of the API process."""

    def __init__(self, interval: float, run: Callable[[], Swept]) -> None:
        self.interval, self.run = interval, run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                swept = self.run()
                if swept.requeued or swept.failed:
                    log.warning("lost workers: requeued %s, failed %s", swept.requeued, swept.failed)
            except Exception:  # a database blip must not end the sweeping
                log.exception("sweep failed")

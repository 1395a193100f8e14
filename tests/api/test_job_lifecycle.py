"""Pause, resume and cancel in every state; the sweeper's handling of jobs whose worker was lost; one
job never trains under two claims. Real databases (SQLite and PostgreSQL); no worker here: the rows
are put in the states a worker would leave them in (tests/e2e has the real processes)."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.db.models import Job, utcnow
from app.db.session import session_scope
from app.services.sweeper import sweep
from app.storage.artifacts import LocalArtifactStore
from tests.utils.data import as_csv, sentiment
from worker.runner import JobCallbacks, claim, finish, remove_ended_checkpoints, run_job


@pytest.fixture
def job_id(client, headers):
    return new_job(client, headers)


def set_row(settings, job_id, **values):
    with session_scope(settings.resolved_database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def kinds(client, headers, job_id):
    return [e["kind"] for e in client.get(f"/v1/jobs/{job_id}/events", headers=headers).json()["items"]]


def post(client, headers, job_id, action):
    return client.post(f"/v1/jobs/{job_id}/{action}", headers=headers)


def test_pause_and_resume_a_queued_job(client, headers, job_id):
    paused = post(client, headers, job_id, "pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    again = post(client, headers, job_id, "pause")
    assert again.status_code == 409 and "only a queued or running job can be paused" in again.json()["detail"]
    resumed = post(client, headers, job_id, "resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    twice = post(client, headers, job_id, "resume")
    assert twice.status_code == 409 and "only a paused job can be resumed" in twice.json()["detail"]
    assert kinds(client, headers, job_id) == ["queued", "recipe_chosen", "paused", "resumed_requested"]


def test_pausing_a_running_job_flags_it_for_its_training_loop(client, headers, job_id, settings):
    set_row(settings, job_id, status="running", attempts=1)
    response = post(client, headers, job_id, "pause")
    assert response.status_code == 200
    assert response.json()["status"] == "running" and response.json()["pause_requested"] is True
    callbacks = JobCallbacks(settings.resolved_database_url, job_id, attempt=1)
    assert callbacks.should_stop() is False and callbacks.should_pause() is True
    assert post(client, headers, job_id, "cancel").json()["cancel_requested"] is True
    refused = post(client, headers, job_id, "pause")
    assert (
        refused.status_code == 409
        and refused.json()["detail"] == f"job {job_id!r} is being cancelled; it cannot be paused"
    )


def test_a_paused_job_cancels_at_once_and_its_checkpoint_goes(client, headers, job_id, settings):
    post(client, headers, job_id, "pause")
    checkpoint = LocalArtifactStore(settings.resolved_artifacts_dir).checkpoint_dir(job_id)
    checkpoint.mkdir(parents=True)
    (checkpoint / "LATEST").write_text("step-000000010")
    cancelled = post(client, headers, job_id, "cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert not checkpoint.exists()
    assert post(client, headers, job_id, "resume").status_code == 409
    assert post(client, headers, job_id, "pause").status_code == 409


def test_another_tenant_cannot_pause_or_resume(client, headers, other_headers, job_id):
    assert post(client, other_headers, job_id, "pause").status_code == 404
    post(client, headers, job_id, "pause")
    assert post(client, other_headers, job_id, "resume").status_code == 404
    assert client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"] == "paused"


class Recorded:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, job_id: str, compute) -> None:
        self.ids.append(job_id)


def run_sweep(settings, enqueue, max_attempts=3):
    store = LocalArtifactStore(settings.resolved_artifacts_dir)
    return sweep(settings.resolved_database_url, store, enqueue, timeout_seconds=60, max_attempts=max_attempts)


def test_a_job_whose_heartbeat_stopped_is_queued_again_and_a_live_one_is_not(client, headers, job_id, settings):
    url = settings.resolved_database_url
    first = claim(url, job_id)
    assert first is not None and first.attempt == 1
    assert claim(url, job_id) is None  # a second delivery while it runs: nothing to claim
    enqueue = Recorded()
    set_row(settings, job_id, heartbeat_at=utcnow() - timedelta(seconds=30))  # slow, not lost
    assert run_sweep(settings, enqueue).requeued == [] and enqueue.ids == []
    set_row(settings, job_id, heartbeat_at=utcnow() - timedelta(seconds=90))
    swept = run_sweep(settings, enqueue)
    assert swept.requeued == [job_id] and enqueue.ids == [job_id]
    job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "queued" and job["attempts"] == 1
    assert kinds(client, headers, job_id)[-1] == "requeued"
    # The next worker claims it as attempt 2; the lost attempt, should it still be alive, can no
    # longer write to the job: it is told to stop, and its ending changes nothing.
    second = claim(url, job_id)
    assert second is not None and second.attempt == 2
    assert JobCallbacks(url, job_id, attempt=1).should_stop() is True
    assert JobCallbacks(url, job_id, attempt=2).should_stop() is False
    assert finish(url, job_id, 1, "failed", "boom", "late") is False
    assert client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"] == "running"
    JobCallbacks(url, job_id, attempt=1).on_event("evaluated", "epoch 1 of the lost attempt", {})
    JobCallbacks(url, job_id, attempt=2).on_event("evaluated", "epoch 1 of the live attempt", {})
    events = client.get(f"/v1/jobs/{job_id}/events", headers=headers).json()["items"]
    assert [e["message"] for e in events if e["kind"] == "evaluated"] == ["epoch 1 of the live attempt"]


def test_a_job_out_of_attempts_fails_with_the_reason_and_loses_its_checkpoint(client, headers, job_id, settings):
    checkpoint = LocalArtifactStore(settings.resolved_artifacts_dir).checkpoint_dir(job_id)
    checkpoint.mkdir(parents=True)
    set_row(settings, job_id, status="running", attempts=3, heartbeat_at=utcnow() - timedelta(minutes=5))
    enqueue = Recorded()
    swept = run_sweep(settings, enqueue, max_attempts=3)
    assert swept.failed == [job_id] and enqueue.ids == []
    job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "failed" and job["model_id"] is None
    assert job["error"].startswith("WorkerLost: no heartbeat from attempt 3") and "its 3 attempts" in job["error"]
    assert not checkpoint.exists()


def test_when_the_queue_is_down_a_lost_job_waits_for_the_next_sweep(client, headers, job_id, settings):
    set_row(settings, job_id, status="running", attempts=1, heartbeat_at=utcnow() - timedelta(minutes=5))

    def broken(_job_id: str, _compute) -> None:
        raise ConnectionError("broker down")

    run_sweep(settings, broken)
    assert client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"] == "running"
    enqueue = Recorded()
    assert run_sweep(settings, enqueue).requeued == [job_id] and enqueue.ids == [job_id]


def new_job(client, headers) -> str:
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))}).json()
    spec = {"base_model": "tiny-bert", "data": {"train": train["id"]}}
    return client.post("/v1/jobs", headers=headers, json=spec).json()["id"]


def test_a_worker_removes_the_checkpoints_it_holds_of_jobs_that_ended_elsewhere(client, headers, settings, tmp_path):
    # A worker's own node, as under object storage: the API cannot reach its checkpoints, so a job
    # cancelled while paused, failed by the sweeper or finished on another worker leaves them here.
    node = LocalArtifactStore(tmp_path / "worker-node")
    jobs = {
        status: new_job(client, headers)
        for status in ("cancelled", "failed", "succeeded", "paused", "running", "queued")
    }
    for status, job in jobs.items():
        set_row(settings, job, status=status)
    for job in [*jobs.values(), "job_deleted_since"]:
        node.checkpoint_dir(job).mkdir(parents=True)
        (node.checkpoint_dir(job) / "LATEST").write_text("step-000000004")
    remove_ended_checkpoints(settings.resolved_database_url, node)
    # What may still go on from its checkpoint stays: paused, running (another process), queued again.
    assert node.checkpoint_jobs() == sorted(jobs[status] for status in ("paused", "running", "queued"))


def test_a_worker_whose_store_cannot_be_built_fails_the_job_with_the_reason(client, headers, job_id, settings):
    broken = settings.model_copy(update={"artifacts_url": "nosuchscheme://bucket/thaw"})
    run_job(broken, job_id)
    job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "failed" and job["attempts"] == 1  # not left `running` for the sweeper
    assert "nosuchscheme" in job["error"], job["error"]

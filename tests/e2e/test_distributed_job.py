"""A job that asks for 2 training processes, over HTTP, with a real worker: torchrun starts 2 ranks that
train with DistributedDataParallel over gloo; the job writes one model, reports once, and learns as the
same job in one process does."""

import pytest

from app.storage.store import build_store
from tests.e2e.conftest import Service
from tests.e2e.test_service_flow import submit, upload
from tests.utils.data import as_csv, sentiment
from tests.utils.services import wait_for

pytestmark = pytest.mark.slow

TEST_SET = sentiment(200, seed=9)
EPOCHS = 6
# 320 rows, 32 held out for validation: 288 train, 18 batches of 16, so each of 2 ranks takes 9 steps
# per epoch and none is left out, as one process does with batches of 32. Then the refit on all 320
# rows: 20 batches of 16, 10 steps per rank per epoch; the job's last progress is the refit's.
STEPS_PER_EPOCH = 9
REFIT_STEPS_PER_EPOCH = 10


def spec(train: str, test: str, processes: int, batch_size: int, epochs: int = EPOCHS) -> dict:
    return {
        "base_model": "tiny-bert",
        "data": {"train": train, "test": test},
        "training": {"epochs": epochs, "learning_rate": 1e-3, "batch_size": batch_size},
        "compute": {"processes": processes},
    }


@pytest.fixture(scope="module")
def finished(service: Service) -> dict[str, dict]:
    train = upload(service, "train.csv", as_csv(sentiment(320, seed=1)))
    test = upload(service, "test.csv", as_csv(TEST_SET))
    ids = {
        "two": submit(service, spec(train, test, processes=2, batch_size=16)),
        "one": submit(service, spec(train, test, processes=1, batch_size=32)),  # the same effective batch
    }
    return {name: service.wait(job_id, timeout=300) for name, job_id in ids.items()}


@pytest.fixture
def faults(service: Service) -> Service:
    """The service, for the tests of a failed, paused or cancelled distributed job: what the ranks do
    does not depend on the database, so these are marked `sqlite_only` (tests/e2e/conftest.py
    deselects their PostgreSQL runs) to keep the suite short."""
    return service


def events_of(service: Service, job_id: str) -> list[dict]:
    return service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"]


def test_the_two_process_job_succeeds_with_one_model(service, finished):
    job = finished["two"]
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1
    assert service.models_of(job["id"]) == [job["model_id"]]


def test_it_reports_once_not_once_per_rank(service, finished):
    job = finished["two"]
    kinds = [event["kind"] for event in events_of(service, job["id"])]
    assert kinds == [
        "queued",
        "recipe_chosen",
        "started",
        "training_started",
        "distributed",
        "phase",
        *["evaluated"] * EPOCHS,
        "refit",
        "distributed",
        "phase",
        "succeeded",
    ]
    distributed, _ = [e["data"] for e in events_of(service, job["id"]) if e["kind"] == "distributed"]
    assert distributed == {
        "world_size": 2,
        "backend": "gloo",
        "batch_size_per_process": 16,
        "effective_batch_size": 32,
        "steps_per_epoch": STEPS_PER_EPOCH,
        "batches_left_out_per_epoch": 0,
    }
    assert [h["epoch"] for h in job["metrics"]["history"]] == list(range(1, EPOCHS + 1))
    assert job["progress"]["stage"] == "done" and job["progress"]["fraction"] == 1.0
    assert job["progress"]["total_steps"] == EPOCHS * REFIT_STEPS_PER_EPOCH  # the steps of one rank


def test_it_learns_as_the_same_job_in_one_process(finished):
    one = finished["one"]
    assert one["status"] == "succeeded", one["error"]
    assert one["progress"]["total_steps"] == EPOCHS * REFIT_STEPS_PER_EPOCH
    accuracy = {name: job["metrics"]["test"]["accuracy"] for name, job in finished.items()}
    print(f"test accuracy: 2 processes x 16 {accuracy['two']:.3f}, 1 process x 32 {accuracy['one']:.3f}")
    # Within noise: the runs differ as two seeds do (batches composed differently, other dropout
    # masks). The one-process job with seeds 0-5 scored 0.94-1.0 on this test set (mean 0.969, sd
    # 0.025): 0.06 is that spread, and a job that failed to learn (0.5) is far outside it.
    assert abs(accuracy["two"] - accuracy["one"]) <= 0.06
    assert accuracy["two"] >= 0.9


def test_the_served_model_predicts_as_reported(service, finished):
    job = finished["two"]
    response = service.client.post(
        f"/v1/models/{job['model_id']}/predict", headers=service.headers, json={"inputs": TEST_SET.texts}
    )
    assert response.status_code == 200, response.text
    labels = [p["label"] for p in response.json()["predictions"]]
    correct = sum(label == gold for label, gold in zip(labels, TEST_SET.labels, strict=True))
    assert correct / len(TEST_SET) == job["metrics"]["test"]["accuracy"]


def test_what_ddp_cannot_train_is_refused_at_submission(service, finished):
    raw = spec(finished["two"]["spec"]["data"]["train"], finished["two"]["spec"]["data"]["test"], 2, 16)
    response = service.client.post(
        "/v1/jobs", headers=service.headers, json={**raw, "optimization": {"unfreezing": "gradual"}}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "compute.processes: 2 processes train with DistributedDataParallel" in detail
    assert "optimization.unfreezing 'gradual'" in detail


@pytest.mark.sqlite_only
def test_a_rank_that_fails_fails_the_job_with_its_reason(faults, finished):
    service = faults
    train = upload(service, "small.csv", as_csv(sentiment(24, seed=4)))  # 21 rows train: 1 batch of 32
    job = service.wait(submit(service, spec(train, finished["two"]["spec"]["data"]["test"], 2, 32)), timeout=300)
    assert job["status"] == "failed"
    assert job["error"].startswith("TooFewBatches: the training data makes 1 batches, fewer than the 2 training")
    failed = [e for e in events_of(service, job["id"]) if e["kind"] == "failed"]
    assert len(failed) == 1
    assert "of 2:" in failed[0]["data"]["detail"] and "torchrun exited with code 1" in failed[0]["data"]["detail"]
    assert service.models_of(job["id"]) == []


@pytest.mark.sqlite_only
def test_a_paused_job_stops_every_rank_and_resumes_from_its_checkpoint(faults, finished):
    service = faults
    data = finished["two"]["spec"]["data"]
    job_id = submit(service, spec(data["train"], data["test"], 2, 16, epochs=20))
    service.wait_for_step(job_id, 3)
    assert service.client.post(f"/v1/jobs/{job_id}/pause", headers=service.headers).status_code == 200
    paused = service.wait(job_id, until={"paused", "succeeded", "failed"}, timeout=60)
    assert paused["status"] == "paused", paused["error"]
    checkpoint = build_store(service.settings).checkpoint_dir(job_id)
    # The choosing run's checkpoints (refit.py): the job paused in it.
    stopped_at = int((checkpoint / "phases" / "main" / "LATEST").read_text().removeprefix("step-"))
    assert stopped_at % 5 == 0  # the ranks agree every 5 steps: all stopped there
    assert service.client.post(f"/v1/jobs/{job_id}/resume", headers=service.headers).status_code == 200
    job = service.wait(job_id, timeout=300)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and job["metrics"]["resumed_from_step"] == stopped_at
    assert job["progress"]["total_steps"] == 20 * REFIT_STEPS_PER_EPOCH
    kinds = [event["kind"] for event in events_of(service, job_id)]
    # Each attempt announced its choosing run's ranks, and the refit its own.
    assert [kinds.count(kind) for kind in ("paused", "resumed", "distributed", "succeeded")] == [1, 1, 3, 1]
    assert service.models_of(job_id) == [job["model_id"]]
    wait_for(lambda: not checkpoint.exists(), timeout=30)  # removed just after the job's end is committed


@pytest.mark.sqlite_only
def test_a_cancelled_job_stops_every_rank(faults, finished):
    service = faults
    data = finished["two"]["spec"]["data"]
    job_id = submit(service, spec(data["train"], data["test"], 2, 16, epochs=100))
    service.wait_for_step(job_id, 3)
    assert service.client.post(f"/v1/jobs/{job_id}/cancel", headers=service.headers).status_code == 200
    job = service.wait(job_id, timeout=60)
    assert job["status"] == "cancelled" and job["error"] is None
    events = events_of(service, job_id)
    assert [e["kind"] for e in events].count("cancelled") == 1 and "stopped at step" in events[-1]["message"]
    assert service.models_of(job_id) == []

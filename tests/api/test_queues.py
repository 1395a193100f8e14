"""Routing jobs to Celery queues by what they need: the queue names, the worker plans, the 422 on a GPU
class the service does not run, and every path that sends a job (submit, resume, the sweeper,
experiments) landing in its route's queue on the real broker of each backend (no worker here)."""

import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.api.collectors import waiting_messages
from app.api.main import create_app
from app.config import Settings
from app.db.models import Job, utcnow
from app.db.session import session_scope
from app.queue import job_sender, make_celery
from app.schemas.spec import Compute
from app.services.routing import gpu_slices, job_queue, plan_worker, queue_name
from app.services.sweeper import sweep
from app.storage.artifacts import LocalArtifactStore
from tests.utils.data import as_csv, sentiment
from tests.utils.services import ROOT, auth, new_key, service_env

# ---- names and plans (no broker) ---------------------------------------------------------------------


def test_cpu_is_the_base_queue_and_other_routes_live_under_it():
    assert queue_name("thaw", "cpu") == "thaw"  # what every worker consumed before routes existed
    assert queue_name("thaw", "gpu") == "thaw.gpu"
    assert queue_name("thaw", "a100") == "thaw.a100"
    assert queue_name("thaw", "gpu", gpus=2) == "thaw.gpu.x2"
    assert queue_name("thaw", "a100", gpus=4) == "thaw.a100.x4"


@pytest.mark.parametrize(
    ("compute", "route", "queue"),
    [
        ({}, "cpu", "q"),
        ({"processes": 2}, "cpu", "q"),  # several CPU processes still need no GPU
        ({"gpus": 1}, "gpu", "q.gpu"),
        ({"gpus": 2}, "gpu", "q.gpu.x2"),
        ({"gpus": 1, "gpu_class": "a100"}, "a100", "q.a100"),
        ({"gpus": 8, "gpu_class": "h100"}, "h100", "q.h100.x8"),
    ],
)
def test_a_jobs_compute_decides_its_route_and_queue(compute, route, queue):
    parsed = Compute.model_validate(compute)
    assert parsed.route == route
    assert job_queue("q", parsed) == queue


def test_a_worker_runs_one_process_per_gpu_pinned_to_it():
    plan = plan_worker("thaw", ["cpu", "gpu"], [0, 1], None, [])
    assert plan.concurrency == 2 and plan.devices == ["0", "1"]
    assert plan.queues == ["thaw", "thaw.gpu"]


def test_a_worker_whose_processes_hold_two_gpus_takes_the_two_gpu_jobs():
    plan = plan_worker("thaw", ["gpu", "a100"], [0, 1, 2, 3], 2, ["a100"])
    assert plan.devices == ["0,1", "2,3"] and plan.gpus_per_process == 2
    assert plan.queues == ["thaw.gpu.x2", "thaw.a100.x2"]
    assert plan_worker("thaw", ["cpu"], [0, 1], 1, []).queues == ["thaw"]  # CPU jobs have no GPU count


def test_the_default_worker_is_the_one_thaw_run_always_started():
    plan = plan_worker("thaw", ["cpu"], [], None, [])
    assert (plan.concurrency, plan.devices, plan.queues) == (1, [], ["thaw"])


@pytest.mark.parametrize(
    ("routes", "gpus", "concurrency", "message"),
    [
        (["h100"], [], None, "unknown queue 'h100': the queues are cpu, gpu, a100"),
        ([], [], None, "at least one queue"),
        (["gpu"], [0, 1, 2], 2, "3 GPUs cannot be shared equally by 2"),
        (["gpu"], [0, 0], None, "distinct device numbers"),
    ],
)
def test_a_worker_plan_that_cannot_work_is_refused(routes, gpus, concurrency, message):
    with pytest.raises(ValueError, match=message):
        plan_worker("thaw", routes, gpus, concurrency, ["a100"])


def test_gpu_slices_are_equal_disjoint_and_in_order():
    assert gpu_slices([3, 5], 2) == ["3", "5"]
    assert gpu_slices([0, 1, 2, 3], 1) == ["0,1,2,3"]


def test_a_gpu_class_cannot_shadow_the_built_in_routes():
    with pytest.raises(ValueError, match="not a GPU class name"):
        Settings(gpu_classes=["gpu"])
    with pytest.raises(ValueError, match="not a GPU class name"):
        Settings(gpu_classes=["A100"])


# ---- the real broker of each backend -----------------------------------------------------------------

ROUTED = ["cpu", "gpu", "a100"]


@pytest.fixture
def routed(settings: Settings) -> Iterator[Settings]:
    """The backend's settings with one GPU class, and its route queues emptied afterwards (Redis keeps them)."""
    routed = settings.model_copy(update={"gpu_classes": ["a100"]})
    yield routed
    celery = make_celery(routed)
    with celery.connection_for_write() as connection:
        for queue in [*(queue_name(routed.queue, route) for route in ROUTED), queue_name(routed.queue, "gpu", 2)]:
            try:
                connection.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue Redis never created
                pass


@pytest.fixture
def routed_client(routed: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(routed)) as test_client:
        yield test_client


@pytest.fixture
def routed_headers(routed: Settings) -> dict[str, str]:
    return auth(new_key(routed, "acme"))


def depths(settings: Settings) -> dict[str, int]:
    """Messages waiting in each route's queue (and the 2-GPU one), by route."""
    celery = make_celery(settings)
    queues = {route: queue_name(settings.queue, route) for route in ROUTED} | {
        "gpu.x2": queue_name(settings.queue, "gpu", 2)
    }
    waiting = waiting_messages(celery, list(queues.values()), timeout=5)
    return {route: waiting[queue] for route, queue in queues.items()}


def submit(client, headers, compute: dict) -> str:
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    spec = {"base_model": "tiny-bert", "data": {"train": train.json()["id"]}, "compute": compute}
    response = client.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_each_job_waits_in_its_routes_queue(routed, routed_client, routed_headers):
    submit(routed_client, routed_headers, {})
    submit(routed_client, routed_headers, {"gpus": 1})
    submit(routed_client, routed_headers, {"gpus": 1})
    submit(routed_client, routed_headers, {"gpus": 1, "gpu_class": "a100"})
    submit(routed_client, routed_headers, {"gpus": 2})
    assert depths(routed) == {"cpu": 1, "gpu": 2, "a100": 1, "gpu.x2": 1}


def test_a_gpu_class_the_service_does_not_run_is_a_422_naming_the_classes(routed, routed_client, routed_headers):
    train = routed_client.post("/v1/datasets", headers=routed_headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    spec = {
        "base_model": "tiny-bert",
        "data": {"train": train.json()["id"]},
        "compute": {"gpus": 1, "gpu_class": "h100"},
    }
    response = routed_client.post("/v1/jobs", headers=routed_headers, json=spec)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("compute.gpu_class: 'h100' is not a GPU class of this service") and "a100" in detail
    assert routed_client.get("/v1/jobs", headers=routed_headers).json()["total"] == 0
    assert depths(routed) == {"cpu": 0, "gpu": 0, "a100": 0, "gpu.x2": 0}


def test_without_gpu_classes_any_gpu_class_is_refused(client, headers):
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    spec = {
        "base_model": "tiny-bert",
        "data": {"train": train.json()["id"]},
        "compute": {"gpus": 1, "gpu_class": "a100"},
    }
    response = client.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 422 and "THAW_GPU_CLASSES is empty" in response.json()["detail"]


def test_an_experiment_with_an_unknown_gpu_class_creates_nothing(routed, routed_client, routed_headers):
    train = routed_client.post("/v1/datasets", headers=routed_headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    body = {
        "data": {"train": train.json()["id"]},
        "base_model": "tiny-bert",
        "common": {"compute": {"gpus": 1, "gpu_class": "a100"}},
        "specs": [{"name": "on-h100", "spec": {"compute": {"gpu_class": "h100"}}}],
        "recipes": ["fine_tuning"],
        "seeds": 1,
    }
    response = routed_client.post("/v1/experiments", headers=routed_headers, json=body)
    assert response.status_code == 422 and "compute.gpu_class: 'h100'" in response.json()["detail"]
    del body["specs"]
    assert routed_client.post("/v1/experiments", headers=routed_headers, json=body).status_code == 202
    assert depths(routed)["a100"] == 1


def test_a_resumed_job_goes_back_to_its_routes_queue(routed, routed_client, routed_headers):
    job_id = submit(routed_client, routed_headers, {"gpus": 1, "gpu_class": "a100"})
    routed_client.post(f"/v1/jobs/{job_id}/pause", headers=routed_headers)
    assert routed_client.post(f"/v1/jobs/{job_id}/resume", headers=routed_headers).status_code == 200
    assert depths(routed)["a100"] == 2  # the first one, when a worker reads it, finds nothing to claim


def test_the_sweeper_requeues_a_lost_job_on_its_route(routed, routed_client, routed_headers):
    job_id = submit(routed_client, routed_headers, {"gpus": 2})
    with session_scope(routed.resolved_database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="running", attempts=1, heartbeat_at=utcnow()))
    store = LocalArtifactStore(routed.resolved_artifacts_dir)
    send = job_sender(make_celery(routed), routed)
    swept = sweep(routed.resolved_database_url, store, send, timeout_seconds=-1, max_attempts=3)
    assert swept.requeued == [job_id]
    assert depths(routed)["gpu.x2"] == 2 and depths(routed)["cpu"] == 0


# ---- `thaw worker` refuses a plan that cannot work, before it starts anything --------------------------


def thaw_worker(settings: Settings, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", *flags],
        cwd=ROOT,
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--queues", "h100"], "unknown queue 'h100': the queues are cpu, gpu, a100"),
        (["--queues", "gpu", "--gpus", "0,1,2", "--concurrency", "2"], "3 GPUs cannot be shared equally by 2"),
        (["--queues", "gpu", "--gpus", "zero"], "not a comma-separated list of GPU numbers"),
    ],
)
def test_thaw_worker_refuses_flags_that_cannot_work(routed, flags, message):
    result = thaw_worker(routed, *flags)
    assert result.returncode == 2 and message in result.stderr

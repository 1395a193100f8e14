"""The deployment examples (docker/compose.yaml, deploy/k8s/) parse and say what their comments say.

No Docker engine or cluster exists here: this reads the YAML and checks the facts that matter, with
the service's own code where it can (every THAW_* name is a setting, every `thaw worker` command
plans a worker for the example's GPU classes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.services.routing import plan_worker
from tests.utils.services import ROOT

YAML_FILES = sorted([*ROOT.glob("docker/**/*.yaml"), *ROOT.glob("deploy/**/*.yaml")])
SHARED = ("THAW_DATABASE_URL", "THAW_BROKER_URL", "THAW_ARTIFACTS_URL")
SETTINGS = {f"THAW_{name.upper()}" for name in Settings.model_fields}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> list[dict[str, Any]]:
    return [doc for path in ROOT.glob("deploy/k8s/*.yaml") for doc in documents(path)]


def named(kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return manifest["spec"]["template"]["spec"]["containers"]


def config_map() -> dict[str, str]:
    return named("ConfigMap", "thaw-config")["data"]


def worker_plan(command: list[str], queue: str, gpu_classes: list[str]):
    """What `thaw worker FLAGS` would start (app/cli/service.py parses the flags the same way)."""
    assert command[:2] == ["thaw", "worker"]
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    gpus = [int(gpu) for gpu in flags["--gpus"].split(",")] if "--gpus" in flags else []
    concurrency = int(flags["--concurrency"]) if "--concurrency" in flags else None
    return plan_worker(queue, flags["--queues"].split(","), gpus, concurrency, gpu_classes)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_parses(path: Path):
    assert documents(path)


def test_the_examples_are_there():
    names = {str(p.relative_to(ROOT)) for p in YAML_FILES}
    assert {"docker/compose.yaml", "deploy/k8s/api.yaml", "deploy/k8s/worker-gpu.yaml"} <= names
    assert {"deploy/k8s/worker-cpu.yaml", "deploy/k8s/migrate-job.yaml", "deploy/k8s/config.yaml"} <= names
    assert (ROOT / "deploy/k8s/README.md").exists()


# ---- docker/compose.yaml -----------------------------------------------------------------------------


def compose_services() -> dict[str, dict[str, Any]]:
    return documents(ROOT / "docker/compose.yaml")[0]["services"]


def thaw_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose_services().items() if "THAW_DATABASE_URL" in s.get("environment", {})}


def test_compose_runs_the_layout():
    services = compose_services()
    assert {"postgres", "redis", "minio", "migrate", "api", "worker-cpu", "worker-gpu"} <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["api"]["command"] == ["thaw", "serve"]  # migrations run once, in `migrate`
    assert services["migrate"]["command"] == ["thaw", "migrate"]


def test_every_thaw_service_shares_the_database_broker_and_store():
    services = thaw_services()
    assert {"migrate", "api", "worker-cpu", "worker-gpu"} <= set(services)
    for variable in SHARED:
        values = {name: s["environment"][variable] for name, s in services.items()}
        assert len(set(values.values())) == 1, values
    env = services["api"]["environment"]
    assert env["THAW_ARTIFACTS_URL"].startswith("s3://") and env["THAW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["THAW_DATABASE_URL"].startswith("postgresql") and env["THAW_BROKER_URL"].startswith("redis://")


def test_the_compose_gpu_worker_reserves_a_gpu_and_serves_the_gpu_queue():
    services = compose_services()
    gpu = services["worker-gpu"]
    assert gpu["command"] == ["thaw", "worker", "--queues", "gpu", "--gpus", "0"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1 and "gpu" in device["capabilities"]
    gpu_classes = json.loads(gpu["environment"]["THAW_GPU_CLASSES"])
    assert worker_plan(gpu["command"], "thaw", gpu_classes).queues == ["thaw.gpu"]
    cpu = services["worker-cpu"]
    assert worker_plan(cpu["command"], "thaw", gpu_classes).queues == ["thaw"]
    assert "deploy" not in cpu


def test_compose_names_only_real_settings():
    for name, service in thaw_services().items():
        unknown = {v for v in service["environment"] if v.startswith("THAW_")} - SETTINGS
        assert not unknown, (name, unknown)


# ---- deploy/k8s --------------------------------------------------------------------------------------


def test_the_api_is_a_deployment_of_two_with_a_readiness_probe_on_healthz_and_a_service():
    api = named("Deployment", "thaw-api")
    assert api["spec"]["replicas"] == 2
    [container] = containers(api)
    assert container["command"] == ["thaw", "serve"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"configMapRef", "secretRef"} <= {key for source in container["envFrom"] for key in source}
    service = named("Service", "thaw-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_the_gpu_worker_requests_a_gpu_and_serves_the_gpu_queue():
    [container] = containers(named("Deployment", "thaw-worker-gpu"))
    assert container["command"][:4] == ["thaw", "worker", "--queues", "gpu"]
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    gpu_classes = json.loads(config_map()["THAW_GPU_CLASSES"])
    plan = worker_plan(container["command"], config_map()["THAW_QUEUE"], gpu_classes)
    assert plan.queues == ["thaw.gpu"] and plan.devices == ["0"]


def test_each_worker_pins_as_many_gpus_as_it_requests():
    gpu_classes = json.loads(config_map()["THAW_GPU_CLASSES"])
    workers = [m for m in manifests() if m["kind"] == "Deployment" and m["metadata"]["name"].startswith("thaw-worker")]
    assert {m["metadata"]["name"] for m in workers} >= {"thaw-worker-cpu", "thaw-worker-gpu"}
    for worker in workers:
        [container] = containers(worker)
        plan = worker_plan(container["command"], "thaw", gpu_classes)  # raises on an unknown queue
        requested = container["resources"].get("limits", {}).get("nvidia.com/gpu", 0)
        pinned = sum(len(devices.split(",")) for devices in plan.devices)
        assert pinned == requested, worker["metadata"]["name"]


def test_the_migration_is_a_job():
    job = named("Job", "thaw-migrate")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["thaw", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_every_pod_reads_the_shared_settings_and_they_are_real():
    config = config_map()
    secret = named("Secret", "thaw-secrets")["stringData"]
    assert set(SHARED) <= set(config) | set(secret)
    assert not (set(config) | set(secret)) - SETTINGS
    for manifest in manifests():
        if manifest["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(manifest):
            sources = {ref["name"] for source in container["envFrom"] for ref in source.values()}
            assert sources == {"thaw-config", "thaw-secrets"}, manifest["metadata"]["name"]
            assert not {e["name"] for e in container.get("env", [])} - SETTINGS

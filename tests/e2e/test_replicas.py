"""Beyond one machine: API replicas and a worker that share only the database, the broker and an
S3-compatible object store (moto's server over HTTP); each keeps its own var_dir and cache. A model
trained through replica A is served by replica B, which fetches and checks it."""

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from tests.conftest import build_settings, fresh_database
from tests.e2e.conftest import Service
from tests.utils.data import as_csv, sentiment
from tests.utils.s3 import ObjectStorage, moto_server
from tests.utils.services import WorkerProcess, auth, new_key

pytestmark = pytest.mark.slow

PREFIX = "replicas"
TEST_SET = sentiment(40, seed=9)


@dataclass
class Replicas:
    storage: ObjectStorage
    shared: Settings  # database, broker and object store; var_dir is each node's own
    a: Service
    b: Service

    def node(self, name: str) -> Settings:
        return node_settings(self.shared, name)


def node_settings(shared: Settings, name: str) -> Settings:
    """Settings of one node: the shared services, a var_dir (so a cache) of its own."""
    var_dir = shared.var_dir.parent / name
    var_dir.mkdir(exist_ok=True)
    return shared.model_copy(update={"var_dir": var_dir})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Replicas]:
    """sqlite: a SQLite file and the embedded broker, shared through the file system; postgresql:
    a PostgreSQL database and Redis, as separate machines would share them."""
    root = tmp_path_factory.mktemp(f"replicas-{request.param}")
    with ExitStack() as stack:
        storage = stack.enter_context(moto_server())
        database = broker = None
        if request.param == "postgresql":
            database = stack.enter_context(fresh_database(request.getfixturevalue("postgres_server")))
            broker = request.getfixturevalue("redis_server")
        first = build_settings(root / "a", {"tiny-bert": tiny_model_dir}, database, broker)  # migrates the database
        shared = first.model_copy(
            update={
                "database_url": first.resolved_database_url,
                "broker_url": first.resolved_broker_url,
                **storage.settings_for(PREFIX),
            }
        )
        worker = WorkerProcess(node_settings(shared, "worker"))
        try:
            worker.wait_ready()
            with TestClient(create_app(shared)) as a, TestClient(create_app(node_settings(shared, "b"))) as b:
                headers = auth(new_key(shared))
                yield Replicas(
                    storage,
                    shared,
                    Service(a.app.state.settings, a, headers, worker),
                    Service(b.app.state.settings, b, headers, worker),
                )
        finally:
            worker.stop()


def upload(service: Service, name: str, content: bytes) -> str:
    response = service.client.post("/v1/datasets", headers=service.headers, files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def trained(replicas: Replicas) -> dict:
    """A job uploaded to, submitted through and followed on replica A."""
    a = replicas.a
    train, test = upload(a, "train.csv", as_csv(sentiment(200, seed=1))), upload(a, "test.csv", as_csv(TEST_SET))
    response = a.client.post(
        "/v1/jobs",
        headers=a.headers,
        json={
            "base_model": "tiny-bert",
            "data": {"train": train, "test": test},
            "training": {"epochs": 3, "learning_rate": 1e-3, "batch_size": 16},
        },
    )
    assert response.status_code == 202, response.text
    job = a.wait(response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


def predict(service: Service, model_id: str) -> object:
    url = f"/v1/models/{model_id}/predict"
    return service.client.post(url, headers=service.headers, json={"inputs": TEST_SET.texts})


def test_artifacts_live_in_the_object_store_not_on_the_nodes(replicas, trained):
    keys = replicas.storage.keys(PREFIX)
    for dataset_id in (trained["spec"]["data"]["train"], trained["spec"]["data"]["test"]):
        assert {f"{PREFIX}/datasets/{dataset_id}.jsonl", f"{PREFIX}/datasets/{dataset_id}.sha256"} <= set(keys)
    assert f"{PREFIX}/models/{trained['model_id']}/SHA256SUMS.json" in keys
    for name in ("a", "b", "worker"):
        assert not (replicas.node(name).var_dir / "artifacts").exists()  # no node keeps a store of its own


def test_replica_b_serves_a_model_trained_through_replica_a(replicas, trained):
    model_id = trained["model_id"]
    copy = replicas.b.settings.var_dir / "cache" / "models" / model_id
    assert not copy.exists()  # B has never seen it
    from_b = predict(replicas.b, model_id)
    assert from_b.status_code == 200, from_b.text
    assert copy.is_dir()  # fetched and checked, now B's own copy
    from_a = predict(replicas.a, model_id)
    assert from_a.status_code == 200
    assert from_b.json() == from_a.json()
    correct = sum(p["label"] == gold for p, gold in zip(from_b.json()["predictions"], TEST_SET.labels, strict=True))
    assert correct / len(TEST_SET) == trained["metrics"]["test"]["accuracy"]


def test_replica_b_knows_the_job_and_the_model_replica_a_created(replicas, trained):
    a, b = replicas.a, replicas.b
    for path in (f"/v1/jobs/{trained['id']}", f"/v1/models/{trained['model_id']}", "/v1/models", "/v1/jobs"):
        from_a, from_b = a.client.get(path, headers=a.headers), b.client.get(path, headers=b.headers)
        assert from_b.status_code == 200 and from_b.json() == from_a.json(), path


def test_a_model_corrupted_in_the_object_store_is_refused_by_a_replica_with_an_empty_cache(replicas, trained):
    model_id = trained["model_id"]
    key = f"{PREFIX}/models/{model_id}/model.safetensors"
    original = replicas.storage.read(key)
    replicas.storage.overwrite(key, original[:-8] + bytes(8))  # the last weights zeroed: loadable, but wrong
    try:
        with TestClient(create_app(replicas.node("c"))) as c:
            response = c.post(
                f"/v1/models/{model_id}/predict", headers=replicas.a.headers, json={"inputs": ["good film"]}
            )
        assert response.status_code == 500
        assert response.json()["detail"] == (
            f"corrupt artifact: model {model_id!r}: model.safetensors does not match its checksum; "
            "it will not be served"
        )
        assert not (replicas.node("c").var_dir / "cache" / "models" / model_id).exists()
    finally:
        replicas.storage.overwrite(key, original)


def test_a_model_deleted_through_one_replica_is_gone_from_the_object_store(replicas, trained):
    a, b = replicas.a, replicas.b
    model_id = trained["model_id"]
    assert b.client.delete(f"/v1/models/{model_id}", headers=b.headers).status_code == 204
    assert replicas.storage.keys(f"{PREFIX}/models/{model_id}/") == []
    assert not (b.settings.var_dir / "cache" / "models" / model_id).exists()
    assert predict(a, model_id).status_code == 404  # A's copy is unreachable: the database says it is gone

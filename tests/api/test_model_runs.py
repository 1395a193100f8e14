"""Evaluations and batch predictions over HTTP, run by the worker's own code in this process (the
end-to-end run with a worker process is tests/e2e/test_service_flow.py): the report equals what
`/predict` answers scored by hand, the output holds every row in order, bad requests are 4xx that
name the field and create nothing, and a run whose worker was lost is queued again."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from app.db.models import ModelRun, utcnow
from app.db.session import session_scope
from app.services.sweeper import sweep_runs
from app.storage.artifacts import LocalArtifactStore
from tests.api.test_metrics import tenant_id
from tests.utils.data import as_csv, sentiment
from tests.utils.trained import publish_trained, train_and_save
from worker.model_runs import run_model_run

TEST_SET = sentiment(40, seed=5)


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_and_save(tiny_model_dir, {}, tmp_path_factory.mktemp("model"), rows=64)


@pytest.fixture
def model_id(settings, headers, trained) -> str:
    """The trained model, tenant acme's."""
    return publish_trained(settings, tenant_id(settings, "acme"), "mdl_runs", trained)


def upload(client, headers, name: str, content: bytes) -> str:
    response = client.post("/v1/datasets", headers=headers, files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def predicted(client, headers, model_id: str, texts: list[str]) -> list[dict]:
    response = client.post(f"/v1/models/{model_id}/predict", headers=headers, json={"inputs": texts})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def run_count(settings) -> int:
    with session_scope(settings.resolved_database_url) as session:
        return session.scalar(select(func.count()).select_from(ModelRun))


def test_an_evaluation_reports_what_predict_answers_scored_against_the_labels(client, headers, settings, model_id):
    dataset = upload(client, headers, "test.csv", as_csv(TEST_SET))
    created = client.post(f"/v1/models/{model_id}/evaluations", headers=headers, json={"dataset": dataset})
    assert created.status_code == 202, created.text
    evaluation = created.json()
    assert evaluation["status"] == "queued" and evaluation["kind"] == "evaluation"
    assert evaluation["columns"] == {"text_field": "text", "label_field": "label"}
    assert evaluation["progress"] == {"rows_done": 0, "rows": 40, "fraction": 0.0, "elapsed_seconds": None}
    run_model_run(settings, evaluation["id"])
    done = client.get(f"/v1/evaluations/{evaluation['id']}", headers=headers).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1 and done["progress"]["rows_done"] == 40 and done["progress"]["fraction"] == 1.0
    report = done["result"]
    labels = [p["label"] for p in predicted(client, headers, model_id, TEST_SET.texts)]
    assert report["examples"] == 40
    assert report["accuracy"] == sum(p == g for p, g in zip(labels, TEST_SET.labels, strict=True)) / 40
    matrix = report["confusion_matrix"]
    names = matrix["labels"]
    for i, gold in enumerate(names):
        for j, guess in enumerate(names):
            pairs = zip(TEST_SET.labels, labels, strict=True)
            assert matrix["matrix"][i][j] == sum(g == gold and p == guess for g, p in pairs)
    assert set(report["per_class"]) == set(names) and 0 <= report["ece"] <= 1
    listed = client.get(f"/v1/models/{model_id}/evaluations", headers=headers).json()
    assert [item["id"] for item in listed["items"]] == [evaluation["id"]] and listed["total"] == 1


def test_a_batch_prediction_writes_every_row_in_order_as_jsonl_and_csv(client, headers, settings, model_id):
    dataset = upload(client, headers, "test.csv", as_csv(TEST_SET))
    created = client.post("/v1/predictions", headers=headers, json={"model": model_id, "dataset": dataset})
    assert created.status_code == 202, created.text
    prediction_id = created.json()["id"]
    early = client.get(f"/v1/predictions/{prediction_id}/output", headers=headers)
    assert early.status_code == 422 and "is queued" in early.json()["detail"]
    run_model_run(settings, prediction_id)
    done = client.get(f"/v1/predictions/{prediction_id}", headers=headers).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["rows"] == 40
    served = predicted(client, headers, model_id, TEST_SET.texts)
    lines = client.get(f"/v1/predictions/{prediction_id}/output", headers=headers).text.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["row"] for row in rows] == list(range(1, 41))
    assert [row["text"] for row in rows] == TEST_SET.texts
    assert [row["label"] for row in rows] == [p["label"] for p in served]
    for row, answer in zip(rows, served, strict=True):
        assert row["scores"] == pytest.approx(answer["scores"], abs=1e-6)
    table = client.get(f"/v1/predictions/{prediction_id}/output?format=csv", headers=headers)
    assert table.headers["content-type"].startswith("text/csv")
    assert f'filename="{prediction_id}.csv"' in table.headers["content-disposition"]
    parsed = list(csv.DictReader(io.StringIO(table.text)))
    labels = done["result"]["labels"]
    assert list(parsed[0]) == ["row", "text", "label", "score", *[f"score:{name}" for name in labels]]
    assert [row["label"] for row in parsed] == [p["label"] for p in served]
    assert float(parsed[0][f"score:{labels[0]}"]) == pytest.approx(served[0]["scores"][labels[0]], abs=1e-6)
    assert client.get("/v1/predictions", headers=headers).json()["total"] == 1
    assert client.delete(f"/v1/predictions/{prediction_id}", headers=headers).status_code == 204
    assert client.get(f"/v1/predictions/{prediction_id}", headers=headers).status_code == 404
    assert not LocalArtifactStore(settings.resolved_artifacts_dir).dataset_path(prediction_id).exists()


def test_bad_requests_name_the_field_and_create_nothing(client, headers, other_headers, settings, model_id):
    labeled = upload(client, headers, "test.csv", as_csv(TEST_SET))
    unlabeled = upload(client, headers, "plain.csv", b"text\ngood film\nbad film\n")
    strange = upload(client, headers, "other.csv", b"text,label\ngood film,positive\nmeh,neutral\n")
    theirs = upload(client, other_headers, "theirs.csv", as_csv(TEST_SET))
    evaluate = f"/v1/models/{model_id}/evaluations"
    cases = [
        (evaluate, {"dataset": unlabeled}, "dataset: dataset", "is unlabeled"),
        (evaluate, {"dataset": strange}, "dataset: 1 label(s) in 'label'", "'neutral'"),
        (evaluate, {"dataset": theirs}, "dataset: dataset", "not found"),
        (evaluate, {"dataset": labeled, "text_field": "body"}, "dataset: dataset", "'body'"),
        (evaluate, {"dataset": labeled, "text_fields": ["a", "b"]}, "text_fields:", "one text per row"),
        ("/v1/predictions", {"model": "mdl_nope", "dataset": labeled}, "model: model 'mdl_nope'", "not found"),
        ("/v1/predictions", {"model": model_id, "dataset": "ds_nope"}, "dataset: dataset 'ds_nope'", "not found"),
    ]
    for path, body, start, part in cases:
        response = client.post(path, headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)
        detail = response.json()["detail"]
        assert detail.startswith(start) and part in detail, (body, detail)
    unknown = client.post(evaluate, headers=headers, json={"dataset": labeled, "colour": "red"})
    assert unknown.status_code == 422 and "colour" in unknown.text
    assert (
        client.post(f"/v1/models/{model_id}/evaluations", headers=other_headers, json={"dataset": theirs}).status_code
        == 404
    )
    assert run_count(settings) == 0


def test_a_run_whose_worker_was_lost_is_queued_again_then_fails_out_of_attempts(client, headers, settings, model_id):
    dataset = upload(client, headers, "test.csv", as_csv(TEST_SET))
    run_id = client.post("/v1/predictions", headers=headers, json={"model": model_id, "dataset": dataset}).json()["id"]
    sent: list[str] = []
    stale = utcnow() - timedelta(hours=1)
    url = settings.resolved_database_url
    for attempts, expected in ((1, "queued"), (3, "failed")):
        with session_scope(url) as session:
            session.execute(
                update(ModelRun)
                .where(ModelRun.id == run_id)
                .values(status="running", attempts=attempts, heartbeat_at=stale)
            )
        swept = sweep_runs(url, sent.append, timeout_seconds=60, max_attempts=3)
        assert client.get(f"/v1/predictions/{run_id}", headers=headers).json()["status"] == expected
        assert (swept.requeued, swept.failed) == (([run_id], []) if expected == "queued" else ([], [run_id]))
    assert sent == [run_id]
    failed = client.get(f"/v1/predictions/{run_id}", headers=headers).json()
    assert failed["error"].startswith("WorkerLost: no heartbeat from attempt 3")
    with session_scope(url) as session:  # a live run is left alone
        session.execute(update(ModelRun).where(ModelRun.id == run_id).values(status="running", heartbeat_at=utcnow()))
    assert sweep_runs(url, sent.append, timeout_seconds=60, max_attempts=3).requeued == []


def test_deleting_the_model_deletes_its_runs_and_their_output(client, headers, settings, model_id):
    dataset = upload(client, headers, "test.csv", as_csv(TEST_SET))
    run_id = client.post("/v1/predictions", headers=headers, json={"model": model_id, "dataset": dataset}).json()["id"]
    run_model_run(settings, run_id)
    output = LocalArtifactStore(settings.resolved_artifacts_dir).dataset_path(run_id)
    assert output.exists()
    with session_scope(settings.resolved_database_url) as session:
        session.execute(update(ModelRun).where(ModelRun.id == run_id).values(status="running"))
    busy = client.delete(f"/v1/models/{model_id}", headers=headers)
    assert busy.status_code == 409 and f"running prediction {run_id!r}" in busy.json()["detail"]
    with session_scope(settings.resolved_database_url) as session:
        session.execute(update(ModelRun).where(ModelRun.id == run_id).values(status="succeeded"))
    assert client.delete(f"/v1/models/{model_id}", headers=headers).status_code == 204
    assert client.get(f"/v1/predictions/{run_id}", headers=headers).status_code == 404
    assert not output.exists() and run_count(settings) == 0


def test_a_run_on_a_corrupt_model_fails_and_says_why(client, headers, settings, model_id):
    dataset = upload(client, headers, "test.csv", as_csv(TEST_SET))
    weights = LocalArtifactStore(settings.resolved_artifacts_dir).model_dir(model_id) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))
    run_id = client.post(f"/v1/models/{model_id}/evaluations", headers=headers, json={"dataset": dataset}).json()["id"]
    run_model_run(settings, run_id)
    failed = client.get(f"/v1/evaluations/{run_id}", headers=headers).json()
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"].startswith("CorruptArtifact:") and "model.safetensors" in failed["error"]


def queued_run_ids(settings) -> list[str]:
    """The run ids of the model-run messages waiting on the settings' queue (taken off it)."""
    from queue import Empty

    from app.queue import MODEL_RUN_TASK, make_celery

    ids = []
    with make_celery(settings).connection_for_read() as connection:
        waiting = connection.SimpleQueue(settings.queue)
        while True:
            try:
                message = waiting.get(timeout=1)
            except Empty:
                return ids
            if message.headers["task"] == MODEL_RUN_TASK:
                ids.append(message.payload[0][0])  # protocol 2: (args, kwargs, embed)
            message.ack()


def test_a_worker_told_to_stop_gives_the_run_back_to_the_queue(client, headers, settings, model_id, monkeypatch):
    """The worker got SIGTERM (worker/draining.py): the run goes back to `queued`, with a message for
    the next worker, and writes no output; the end-to-end stop is tests/e2e/test_run_supervisor.py."""
    dataset = upload(client, headers, "test.csv", as_csv(TEST_SET))
    run_id = client.post("/v1/predictions", headers=headers, json={"model": model_id, "dataset": dataset}).json()["id"]
    assert queued_run_ids(settings) == [run_id]  # what the API sent
    monkeypatch.setattr("worker.model_runs.draining", lambda: True)
    run_model_run(settings, run_id)
    run = client.get(f"/v1/predictions/{run_id}", headers=headers).json()
    assert (run["status"], run["attempts"], run["error"]) == ("queued", 1, None)
    assert queued_run_ids(settings) == [run_id]  # sent again, for the next worker
    assert not LocalArtifactStore(settings.resolved_artifacts_dir).dataset_path(run_id).exists()

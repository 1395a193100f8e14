"""Upload, submit, poll, predict, evaluate and batch-predict over HTTP, with a real worker process
training a tiny model."""

import json
import threading
import time

import pytest

from app.schemas.recipes import SETFIT_BELOW_ROWS_PER_CLASS
from tests.e2e.conftest import Service
from tests.utils.data import as_csv, sentiment
from tests.utils.services import wait_for

pytestmark = pytest.mark.slow

TEST_SET = sentiment(60, seed=9)


def upload(service: Service, name: str, content: bytes, headers: dict[str, str] | None = None) -> str:
    headers = headers or service.headers
    response = service.client.post("/v1/datasets", headers=headers, files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(service: Service, spec: dict) -> str:
    response = service.client.post("/v1/jobs", headers=service.headers, json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def finished(service: Service) -> dict:
    train = upload(service, "train.csv", as_csv(sentiment(300, seed=1)))
    test = upload(service, "test.csv", as_csv(TEST_SET))
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "data": {"train": train, "test": test},
            "training": {"epochs": 4, "learning_rate": 1e-3, "batch_size": 16},
        },
    )
    return service.wait(job_id)


def test_the_job_succeeds_with_metrics_progress_and_timings(service, finished):
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["attempts"] == 1 and finished["error"] is None
    assert finished["metrics"]["accuracy"] >= 0.9
    assert set(finished["metrics"]["per_class"]) == {"negative", "positive"}
    assert [h["epoch"] for h in finished["metrics"]["history"]] == [1, 2, 3, 4]
    assert finished["progress"]["stage"] == "done" and finished["progress"]["fraction"] == 1.0
    # The last run is the refit on all 300 rows (19 batches of 16), after 4 epochs of 270 chose the epoch.
    assert finished["progress"]["total_steps"] == 4 * 19
    timings = finished["timings"]
    assert 0 < timings["train_seconds"] < timings["total_seconds"]
    assert timings["queued_seconds"] >= 0


def test_events_tell_the_story_in_order(service, finished):
    events = service.client.get(f"/v1/jobs/{finished['id']}/events", headers=service.headers).json()["items"]
    assert [e["kind"] for e in events] == [
        "queued",
        "recipe_chosen",
        "started",
        "training_started",
        "phase",
        *["evaluated"] * 4,
        "refit",
        "phase",
        "succeeded",
    ]
    assert events[1]["data"]["recipe"] == "fine_tuning" and "150 per class" in events[1]["message"]
    assert events[9]["data"] == {"epoch": finished["metrics"]["best_epoch"], "train_examples": 300}
    phase = events[4]["data"]
    assert phase["trainable_groups"] == ["embeddings", "layer_1", "layer_2", "new"]
    assert phase["learning_rates"] == dict.fromkeys(phase["trainable_groups"], 1e-3)
    assert events[-1]["data"]["model_id"] == finished["model_id"]


def test_predictions_match_the_reported_test_accuracy(service, finished):
    response = service.client.post(
        f"/v1/models/{finished['model_id']}/predict", headers=service.headers, json={"inputs": TEST_SET.texts}
    )
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == len(TEST_SET)
    for p in predictions:
        assert set(p["scores"]) == {"negative", "positive"}
        assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["score"] == max(p["scores"].values()) and p["scores"][p["label"]] == p["score"]
    correct = sum(p["label"] == gold for p, gold in zip(predictions, TEST_SET.labels, strict=True))
    assert correct / len(TEST_SET) == finished["metrics"]["test"]["accuracy"]


def test_the_model_card(service, finished):
    card = service.client.get(f"/v1/models/{finished['model_id']}", headers=service.headers).json()
    assert card["job_id"] == finished["id"] and card["base_model"] == "tiny-bert"
    assert card["labels"] == ["negative", "positive"] and card["spec"] == finished["spec"]
    assert card["metrics"]["accuracy"] == finished["metrics"]["accuracy"]
    assert card["trainable_params"] == card["total_params"] > 900_000  # fine-tuning trains everything
    directory = service.settings.resolved_artifacts_dir / "models" / card["id"]
    assert card["artifact_bytes"] == sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    listed = service.client.get("/v1/models", headers=service.headers).json()["items"]
    assert card["id"] in [m["id"] for m in listed]


def test_the_default_job_is_chosen_refit_and_calibrated_and_its_card_says_so(service, finished):
    card = service.client.get(f"/v1/models/{finished['model_id']}", headers=service.headers).json()
    choice = card["spec"]["recipe_choice"]
    assert card["spec"]["recipe"] == choice["recipe"] == "fine_tuning" and choice["requested"] == "auto"
    assert choice["rows"] == 300 and choice["classes"] == 2
    metrics = card["metrics"]
    assert metrics["refit"] == {"epochs": metrics["best_epoch"], "train_examples": 300}
    calibration = metrics["calibration"]
    assert calibration["method"] == "temperature_scaling" and calibration["validation_examples"] == 30
    assert calibration["validation_ece_after"] <= calibration["validation_ece_before"]
    assert {"ece", "ece_uncalibrated"} <= set(metrics["test"])


def test_abstain_below_over_http(service, finished):
    url = f"/v1/models/{finished['model_id']}/predict"
    plain = service.client.post(url, headers=service.headers, json={"inputs": TEST_SET.texts}).json()["predictions"]
    cut = sorted(p["score"] for p in plain)[len(plain) // 2]  # the median score: about half fall under it
    answer = service.client.post(url, headers=service.headers, json={"inputs": TEST_SET.texts, "abstain_below": cut})
    assert answer.status_code == 200, answer.text
    for before, after in zip(plain, answer.json()["predictions"], strict=True):
        assert after["scores"] == before["scores"] and after["score"] == before["score"]
        assert after["label"] == (None if before["score"] < cut else before["label"])
    assert any(p["label"] is None for p in answer.json()["predictions"])
    bad = service.client.post(url, headers=service.headers, json={"inputs": ["a"], "abstain_below": 1.5})
    assert bad.status_code == 422 and "abstain_below" in bad.text


@pytest.mark.sqlite_only  # the recipe's choice and serving do not touch the database differently
def test_few_rows_per_class_get_setfit_and_the_models_own_abstain_below(service):
    train = upload(service, "few.csv", as_csv(sentiment(16, seed=3)))
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "data": {"train": train},
            "abstain_below": 0.9,
            "contrastive": {"pairs_per_example": 5, "learning_rate": 1e-3},
            "training": {"learning_rate": 1e-2, "epochs": 30},
        },
    )
    job = service.wait(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["recipe"] == "setfit" and job["spec"]["recipe_choice"]["recipe"] == "setfit"
    assert job["metrics"]["contrastive"]["pairs"] == 2 * 5 * 16
    events = service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"]
    kinds = [e["kind"] for e in events]
    assert kinds.index("recipe_chosen") < kinds.index("contrastive_started") < kinds.index("contrastive_finished")
    assert kinds.index("contrastive_finished") < kinds.index("training_started")
    card = service.client.get(f"/v1/models/{job['model_id']}", headers=service.headers).json()
    assert f"under {SETFIT_BELOW_ROWS_PER_CLASS} per class" in card["spec"]["recipe_choice"]["reason"]
    url = f"/v1/models/{job['model_id']}/predict"
    own = service.client.post(url, headers=service.headers, json={"inputs": TEST_SET.texts}).json()["predictions"]
    assert all((p["label"] is None) == (p["score"] < 0.9) for p in own)
    lower = service.client.post(url, headers=service.headers, json={"inputs": TEST_SET.texts, "abstain_below": 0.01})
    assert all(p["label"] is not None for p in lower.json()["predictions"])


def test_bad_predict_requests(service, finished):
    url = f"/v1/models/{finished['model_id']}/predict"
    assert service.client.post(url, headers=service.headers, json={"inputs": []}).status_code == 422
    assert service.client.post(url, headers=service.headers, json={"texts": ["a"]}).status_code == 422
    too_many = service.client.post(url, headers=service.headers, json={"inputs": ["a"] * 257})
    assert too_many.status_code == 422 and "at most 256 texts" in too_many.json()["detail"]
    too_long = service.client.post(url, headers=service.headers, json={"inputs": ["ok", "x" * 20_001]})
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == "inputs.1: 20001 characters is over the limit of 20000 per text"
    other = auth_for(service, "intruder")
    assert service.client.post(url, headers=other, json={"inputs": ["a"]}).status_code == 404


def test_a_full_queue_answers_429_with_retry_after_and_loses_no_accepted_request(service, finished):
    """A forward pass is kept busy for real (the test holds the lock every forward pass takes), so
    requests queue behind it exactly as they would behind a long batch."""
    url = f"/v1/models/{finished['model_id']}/predict"

    def post() -> object:
        return service.client.post(url, headers=service.headers, json={"inputs": ["good film"]})

    assert post().status_code == 200  # loaded
    serving = service.client.app.state.serving
    served, batcher = serving.cache._hit(finished["model_id"]), serving.batcher
    limit, batcher.queue_limit = batcher.queue_limit, 1
    answers: list = []
    try:
        with served.deployment._lock:
            taken = batcher.requests
            first = threading.Thread(target=lambda: answers.append(post()))
            first.start()
            wait_for(lambda: batcher.requests == taken + 1, 10)  # in the busy forward pass
            second = threading.Thread(target=lambda: answers.append(post()))
            second.start()
            wait_for(lambda: batcher._queued[served.key] == 1, 10)  # waiting: the queue is full
            refused = post()
        first.join(10)
        second.join(10)
    finally:
        batcher.queue_limit = limit
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["detail"] == (f"model {finished['model_id']!r} has 1 texts waiting (limit 1); retry shortly")
    assert [answer.status_code for answer in answers] == [200, 200]


def wait_run(service: Service, path: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = service.client.get(path, headers=service.headers).json()
        if run["status"] in {"succeeded", "failed"}:
            return run
        time.sleep(0.2)
    raise AssertionError(
        f"{path} still {run['status']} after {timeout}s:\n{service.worker.log_path.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def runs(service: Service, finished: dict) -> dict:
    """An evaluation and a batch prediction of the model on its test set, run by the worker."""
    model, test = finished["model_id"], finished["spec"]["data"]["test"]
    evaluation = service.client.post(f"/v1/models/{model}/evaluations", headers=service.headers, json={"dataset": test})
    prediction = service.client.post("/v1/predictions", headers=service.headers, json={"model": model, "dataset": test})
    assert evaluation.status_code == prediction.status_code == 202, (evaluation.text, prediction.text)
    return {
        "evaluation": wait_run(service, f"/v1/evaluations/{evaluation.json()['id']}"),
        "prediction": wait_run(service, f"/v1/predictions/{prediction.json()['id']}"),
    }


def test_the_worker_evaluates_the_model_on_its_test_set_as_the_job_did(service, finished, runs):
    evaluation = runs["evaluation"]
    assert evaluation["status"] == "succeeded", evaluation["error"]
    report, test = evaluation["result"], finished["metrics"]["test"]
    assert report["examples"] == len(TEST_SET) and report["accuracy"] == test["accuracy"]
    assert report["confusion_matrix"] == test["confusion_matrix"]
    assert report["ece"] == pytest.approx(test["ece"], abs=1e-4)
    listed = service.client.get(f"/v1/models/{finished['model_id']}/evaluations", headers=service.headers).json()
    assert evaluation["id"] in [item["id"] for item in listed["items"]]


def test_the_worker_predicts_a_whole_dataset_as_predict_does(service, finished, runs):
    prediction = runs["prediction"]
    assert prediction["status"] == "succeeded", prediction["error"]
    assert prediction["progress"]["rows_done"] == prediction["progress"]["rows"] == len(TEST_SET)
    output = service.client.get(f"/v1/predictions/{prediction['id']}/output", headers=service.headers)
    rows = [json.loads(line) for line in output.text.splitlines()]
    served = service.client.post(
        f"/v1/models/{finished['model_id']}/predict", headers=service.headers, json={"inputs": TEST_SET.texts}
    ).json()["predictions"]
    assert [row["text"] for row in rows] == TEST_SET.texts
    assert [row["label"] for row in rows] == [p["label"] for p in served]


def test_checkpoints_list_each_epochs_evaluation_and_mark_the_one_kept(service, finished):
    items = service.client.get(f"/v1/jobs/{finished['id']}/checkpoints", headers=service.headers).json()["items"]
    history = finished["metrics"]["history"]
    assert [c["epoch"] for c in items] == [1, 2, 3, 4]
    assert [c["step"] for c in items] == [17, 34, 51, 68]  # 270 training rows (30 held out) in batches of 16
    for checkpoint, epoch in zip(items, history, strict=True):
        assert checkpoint["metrics"]["accuracy"] == epoch["accuracy"] and checkpoint["train_loss"] > 0
        assert checkpoint["stage"] is None and checkpoint["member"] is None
    assert [c["epoch"] for c in items if c["best"]] == [finished["metrics"]["best_epoch"]]
    assert items[-1]["train_loss"] < items[0]["train_loss"]


def test_a_corrupt_model_is_reported_not_served(service, finished):
    model_id = finished["model_id"]
    weights = service.settings.resolved_artifacts_dir / "models" / model_id / "model.safetensors"
    original = weights.read_bytes()
    service.client.app.state.model_cache.evict(model_id)  # so that the next predict loads from disk
    weights.write_bytes(original[:-8] + bytes(8))  # the last weights zeroed: still loadable, but wrong
    try:
        response = service.client.post(
            f"/v1/models/{model_id}/predict", headers=service.headers, json={"inputs": ["good film"]}
        )
        assert response.status_code == 500
        assert response.json()["detail"] == (
            f"corrupt artifact: model {model_id!r}: model.safetensors does not match its checksum; "
            "it will not be served"
        )
    finally:
        weights.write_bytes(original)
    response = service.client.post(f"/v1/models/{model_id}/predict", headers=service.headers, json={"inputs": ["a"]})
    assert response.status_code == 200


def test_another_tenant_finds_nothing_on_any_route(service, finished, runs):
    """Walks every /v1 route of the OpenAPI schema with a second tenant's key, on the first tenant's
    real dataset, job and model."""
    owner, intruder = service.headers, auth_for(service, "intruder-walk")
    train = finished["spec"]["data"]["train"]
    experiment = {"data": {"train": train}, "base_model": "tiny-bert", "recipes": ["top_only"], "seeds": 1}
    experiment_id = service.client.post("/v1/experiments", headers=owner, json=experiment).json()["id"]
    service.client.post(f"/v1/experiments/{experiment_id}/cancel", headers=owner)  # its run need not train
    ids = {"dataset_id": train, "job_id": finished["id"], "model_id": finished["model_id"]}
    ids["experiment_id"] = experiment_id
    ids["evaluation_id"], ids["prediction_id"] = runs["evaluation"]["id"], runs["prediction"]["id"]
    walked = 0
    for path, item in service.client.get("/openapi.json").json()["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method in item:
            body = {"inputs": ["good"]} if path.endswith("/predict") else None
            if path.endswith("/evaluations") and method == "post":
                body = {"dataset": train}  # a valid body: the model, not the body, must be what refuses
            response = service.client.request(method, path.format(**ids), headers=intruder, json=body)
            if "{" in path:
                assert response.status_code == 404, (method, path, response.text)
            elif method == "get":
                assert response.status_code == 200 and not set(ids.values()) & set(response.text.split('"'))
            walked += 1
    assert walked >= 20
    # Nor can the owner's objects be used as job input, EWC data or a distillation source.
    for spec in (
        {"base_model": "tiny-bert", "data": {"train": train}},
        {
            "base_model": "tiny-bert",
            "data": {"train": upload(service, "mine.csv", as_csv(sentiment(20)), intruder)},
            "optimization": {"regularizers": [{"name": "source_distillation", "source_model": finished["model_id"]}]},
        },
    ):
        stolen = service.client.post("/v1/jobs", headers=intruder, json=spec)
        assert stolen.status_code == 422 and "not found" in stolen.json()["detail"]
    for path in (
        f"/v1/datasets/{train}",
        f"/v1/jobs/{finished['id']}",
        f"/v1/models/{finished['model_id']}",
        f"/v1/predictions/{ids['prediction_id']}",
    ):
        assert service.client.get(path, headers=owner).status_code == 200  # the intruder's deletes did nothing


def auth_for(service: Service, tenant: str) -> dict[str, str]:
    from tests.utils.services import auth, new_key

    return auth(new_key(service.settings, tenant))


def test_a_running_job_cancels_within_seconds_and_makes_no_model(service):
    import time

    train = upload(service, "long.csv", as_csv(sentiment(200, seed=4)))
    job_id = submit(
        service,
        {"base_model": "tiny-bert", "data": {"train": train}, "training": {"epochs": 100, "batch_size": 8}},
    )
    running = service.wait(job_id, until={"running"}, timeout=120)
    while running["progress"] is None:  # wait until it is inside the training loop
        time.sleep(0.1)
        running = service.client.get(f"/v1/jobs/{job_id}", headers=service.headers).json()
    assert running["status"] == "running" and running["progress"]["step"] > 0
    models_before = service.client.get("/v1/models", headers=service.headers).json()["total"]
    asked = time.monotonic()
    assert service.client.post(f"/v1/jobs/{job_id}/cancel", headers=service.headers).status_code == 200
    job = service.wait(job_id, timeout=30)
    assert job["status"] == "cancelled" and job["model_id"] is None
    assert time.monotonic() - asked < 10
    assert service.client.get("/v1/models", headers=service.headers).json()["total"] == models_before
    events = service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"]
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "cancelled" and "cancel_requested" in kinds  # epochs may end in between
    assert "stopped at step" in events[-1]["message"]


def test_a_job_whose_worker_raises_ends_failed_with_the_reason(service):
    train = upload(service, "ok.csv", as_csv(sentiment(40, seed=5)))
    job_id = submit(service, {"base_model": "broken", "data": {"train": train}})
    job = service.wait(job_id, timeout=120)
    assert job["status"] == "failed"
    assert job["error"].startswith("BaseModelUnloadable: cannot load the base model: SafetensorError")
    assert job["finished_at"] is not None and job["model_id"] is None
    last = service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"][-1]
    assert last["kind"] == "failed" and "Traceback" in last["data"]["detail"]


def test_an_adapter_model_stores_its_own_weights_and_is_served_over_its_base(service, finished):
    train = upload(service, "a.csv", as_csv(sentiment(300, seed=1)))
    test = upload(service, "at.csv", as_csv(TEST_SET))
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "recipe": "adapters",
            "data": {"train": train, "test": test},
            "model": {"adapters": {"size": 8}},
            "training": {"epochs": 2, "batch_size": 16},
        },
    )
    job = service.wait(job_id)
    assert job["status"] == "succeeded", job["error"]
    card = service.client.get(f"/v1/models/{job['model_id']}", headers=service.headers).json()
    full = service.client.get(f"/v1/models/{finished['model_id']}", headers=service.headers).json()
    assert card["trainable_params"] < 0.01 * card["total_params"]
    assert card["artifact_bytes"] < 0.25 * full["artifact_bytes"]
    response = service.client.post(
        f"/v1/models/{job['model_id']}/predict", headers=service.headers, json={"inputs": TEST_SET.texts}
    )
    predicted = [p["label"] for p in response.json()["predictions"]]
    correct = sum(p == g for p, g in zip(predicted, TEST_SET.labels, strict=True))
    assert correct / len(TEST_SET) == job["metrics"]["test"]["accuracy"]


def test_source_distillation_from_an_earlier_model(service, finished):
    train = upload(service, "s.csv", as_csv(sentiment(100, seed=6)))
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "data": {"train": train},
            "training": {"epochs": 1},
            "optimization": {"regularizers": [{"name": "source_distillation", "source_model": finished["model_id"]}]},
        },
    )
    job = service.wait(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["optimization"]["regularizers"][0]["source_model"] == finished["model_id"]


def test_a_multi_label_job_from_jsonl_lists_predicts_label_sets(service):
    import json

    from tests.utils.data import tagged

    data = tagged(200, seed=1)
    lines = "\n".join(
        json.dumps({"text": t, "tags": list(tags)}) for t, tags in zip(data.texts, data.labels, strict=True)
    )
    train = upload(service, "tags.jsonl", lines.encode())
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "task": "multi_label",
            "label_field": "tags",
            "data": {"train": train},
            "training": {"epochs": 2, "learning_rate": 3e-3},
        },
    )
    job = service.wait(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert {"micro_f1", "macro_f1", "threshold"} <= set(job["metrics"])
    assert set(job["metrics"]["per_class"]) == {"funny", "sad"}
    response = service.client.post(
        f"/v1/models/{job['model_id']}/predict", headers=service.headers, json={"inputs": ["witty and gloomy"]}
    )
    [prediction] = response.json()["predictions"]
    threshold = job["metrics"]["threshold"]
    assert prediction["labels"] == [k for k, p in prediction["scores"].items() if p > threshold]


def test_a_sentence_pair_job_takes_pairs_and_refuses_single_texts(service):
    import csv
    import io

    from tests.utils.data import paired

    data = paired(120, seed=1)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["premise", "hypothesis", "label"])
    writer.writerows((a, b, label) for (a, b), label in zip(data.texts, data.labels, strict=True))
    response = service.client.post(
        "/v1/datasets",
        headers=service.headers,
        data={"text_field": "premise"},
        files={"file": ("pairs.csv", out.getvalue().encode())},
    )
    train = response.json()["id"]
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "text_fields": ["premise", "hypothesis"],
            "data": {"train": train},
            "training": {"epochs": 1},
        },
    )
    job = service.wait(job_id)
    assert job["status"] == "succeeded", job["error"]
    url = f"/v1/models/{job['model_id']}/predict"
    ok = service.client.post(url, headers=service.headers, json={"inputs": [["good plot", "long movie"]]})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] in {"negative", "positive"}
    wrong = service.client.post(url, headers=service.headers, json={"inputs": ["just one text"]})
    assert wrong.status_code == 422 and "takes [first, second] pairs" in wrong.json()["detail"]


def test_deleting_a_model_removes_it_everywhere(service, finished):
    model_id = finished["model_id"]
    assert service.client.delete(f"/v1/models/{model_id}", headers=service.headers).status_code == 204
    assert service.client.get(f"/v1/models/{model_id}", headers=service.headers).status_code == 404
    gone = service.client.post(f"/v1/models/{model_id}/predict", headers=service.headers, json={"inputs": ["a"]})
    assert gone.status_code == 404
    assert not (service.settings.resolved_artifacts_dir / "models" / model_id).exists()

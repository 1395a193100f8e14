import copy

import pytest

from tests.utils.data import as_csv, sentiment


@pytest.fixture
def train_id(client, headers):
    response = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    return response.json()["id"]


def submit(client, headers, spec):
    return client.post("/v1/jobs", headers=headers, json=spec)


def test_submit_stores_the_fully_expanded_spec(client, headers, train_id):
    response = submit(
        client,
        headers,
        {"base_model": "tiny-bert", "recipe": "fine_tuning", "data": {"train": train_id}, "training": {"epochs": 2}},
    )
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    job = client.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()
    spec = job["spec"]
    assert spec["training"] == {
        "epochs": 2,
        "batch_size": 32,
        "learning_rate": 1e-4,
        "max_length": 64,
        "seed": 0,
        "eval_metric": "accuracy",
        "early_stopping_patience": None,
        "precision": "auto",
        "refit": True,
        "calibrate": True,
        "class_weights": None,
        "cache_frozen_layers": True,
        "frozen_cache_mb": 1024,
    }
    assert spec["recipe"] == "fine_tuning" and spec["optimization"]["train"] == "all"
    assert spec["model"] == {
        "pooling": "mean",
        "head": "linear",
        "head_hidden": 256,
        "dropout": 0.1,
        "adapters": None,
        "lora": None,
    }
    assert spec["optimization"]["lr_schedule"] == {"name": "linear_warmup", "warmup_fraction": 0.06}
    assert spec["optimization"]["unfreezing"] == {"name": "none"}
    assert spec["optimization"]["regularizers"] == [] and spec["optimization"]["discriminative_decay"] is None
    assert spec["data"] == {"train": train_id, "validation": None, "test": None, "validation_fraction": 0.1}
    signal = ("stages", "tasks", "task_sampling", "main_task_epochs", "consistency", "slices", "ensemble")
    assert {key: spec[key] for key in signal} == {
        "stages": [],
        "tasks": [],
        "task_sampling": {"name": "proportional"},
        "main_task_epochs": 0,
        "consistency": None,
        "slices": [],
        "ensemble": None,
    }
    assert spec["teacher"] is None and spec["student_layers"] is None and spec["distillation"] is None
    assert spec["webhook"] is None
    assert spec["compute"] == {"gpus": 0, "gpu_class": None, "processes": None}
    assert job["status"] == "queued" and job["attempts"] == 0 and job["model_id"] is None
    assert job["timings"]["train_seconds"] is None and job["timings"]["queued_seconds"] >= 0
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=headers).json()["items"]
    assert [e["kind"] for e in events] == ["queued"]


def test_a_recipe_expands_and_the_spec_overrides_it(client, headers, train_id):
    job_id = submit(
        client,
        headers,
        {
            "base_model": "tiny-bert",
            "recipe": "feature_extraction",
            "data": {"train": train_id},
            "training": {"epochs": 4},
        },
    ).json()["id"]
    spec = client.get(f"/v1/jobs/{job_id}", headers=headers).json()["spec"]
    assert spec["optimization"]["train"] == "head_only"  # from the recipe
    assert spec["training"]["learning_rate"] == 1.0 and spec["model"]["pooling"] == "scalar_mix"  # recipe
    assert spec["optimization"]["head_fit"] == "lbfgs"  # recipe
    assert spec["training"]["epochs"] == 4  # the submitted override wins


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"base_model": "gpt-17"},
            "base_model: unknown base_model 'gpt-17'; the catalog has: minilm-l6, tiny-bert",
        ),
        (
            {"recipe": "magic"},
            "unknown recipe 'magic'; known recipes: adapters, chain_thaw, ewc, feature_extraction, fine_tuning",
        ),
        ({"data": {"train": "ds_missing"}}, "data.train: dataset 'ds_missing' not found"),
        (
            {"data": {"train": "TRAIN", "validation": "ds_nope"}},
            "data.validation: dataset 'ds_nope' not found",
        ),
        ({"training": {"epochs": 0}}, "training.epochs: Input should be greater than or equal to 1"),
        (
            {"training": {"learning_rate": 5}},
            "training.learning_rate: Input should be less than or equal to 1",
        ),
        ({"training": {"batch_size": "big"}}, "training.batch_size: Input should be a valid integer"),
        ({"training": {"epoch": 3}}, "training.epoch: Extra inputs are not permitted"),
        ({"model": {"pooling": "attention"}}, "model.pooling: Input should be 'cls', 'max', 'mean' or 'scalar_mix'"),
        ({"label_field": "topic"}, "no label column 'topic'; the columns are: text, label"),
        ({"text_field": "label", "label_field": "label"}, "text_field and label_field must name different"),
        ({"data": None}, "data: Input should be a valid dictionary"),
        (
            {"data": {"train": "TRAIN", "validation_fraction": 0}, "training": {"early_stopping_patience": 2}},
            "training.early_stopping_patience needs validation data (data.validation_fraction is 0)",
        ),
        (
            {"data": {"train": "TRAIN", "validation_fraction": -0.1}},
            "data.validation_fraction: Input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_specs_are_422_name_the_field_and_create_nothing(client, headers, train_id, change, message):
    spec = {"base_model": "tiny-bert", "data": {"train": train_id}, **copy.deepcopy(change)}
    if isinstance(spec["data"], dict) and spec["data"].get("train") == "TRAIN":
        spec["data"]["train"] = train_id
    response = submit(client, headers, spec)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert client.get("/v1/jobs", headers=headers).json()["total"] == 0


def test_one_class_training_data_is_refused(client, headers):
    one = client.post("/v1/datasets", headers=headers, files={"file": ("one.csv", b"text,label\na,x\nb,x\n")}).json()[
        "id"
    ]
    response = submit(client, headers, {"base_model": "tiny-bert", "data": {"train": one}})
    assert response.status_code == 422
    assert "has only one class in 'label' (x); a classifier needs at least two" in response.json()["detail"]


def test_unlabeled_data_cannot_train_a_classifier(client, headers):
    unlabeled = client.post("/v1/datasets", headers=headers, files={"file": ("u.csv", b"text\nsome text\n")}).json()[
        "id"
    ]
    response = submit(client, headers, {"base_model": "tiny-bert", "data": {"train": unlabeled}})
    assert response.status_code == 422
    assert "no label column 'label'; the columns are: text" in response.json()["detail"]


def test_a_job_may_use_another_label_column(client, headers):
    csv = b"text,label,fine\na,x,p\nb,y,q\nc,x,q\n"
    ds = client.post("/v1/datasets", headers=headers, files={"file": ("f.csv", csv)}).json()["id"]
    ok = submit(client, headers, {"base_model": "tiny-bert", "data": {"train": ds}, "label_field": "fine"})
    assert ok.status_code == 202


def test_cancel_a_queued_job_then_again(client, headers, train_id):
    job_id = submit(client, headers, {"base_model": "tiny-bert", "data": {"train": train_id}}).json()["id"]
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"] is not None
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job_id}/events", headers=headers).json()["items"]]
    assert kinds == ["queued", "recipe_chosen", "cancelled"]


def test_a_dataset_in_use_by_a_queued_job_cannot_be_deleted(client, headers, train_id):
    job_id = submit(client, headers, {"base_model": "tiny-bert", "data": {"train": train_id}}).json()["id"]
    response = client.delete(f"/v1/datasets/{train_id}", headers=headers)
    assert response.status_code == 409 and job_id in response.json()["detail"]
    client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert client.delete(f"/v1/datasets/{train_id}", headers=headers).status_code == 204


def test_jobs_list_newest_first_with_status_filter(client, headers, train_id):
    ids = [
        submit(client, headers, {"base_model": "tiny-bert", "data": {"train": train_id}}).json()["id"] for _ in range(3)
    ]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=headers)
    page = client.get("/v1/jobs?limit=2", headers=headers).json()
    assert page["total"] == 3 and [j["id"] for j in page["items"]] == [ids[2], ids[1]]
    cancelled = client.get("/v1/jobs?status=cancelled", headers=headers).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]
    assert client.get("/v1/jobs?status=bogus", headers=headers).status_code == 422


def test_another_tenants_job_is_not_found_and_their_datasets_unusable(client, headers, other_headers, train_id):
    job_id = submit(client, headers, {"base_model": "tiny-bert", "data": {"train": train_id}}).json()["id"]
    for method, path in [
        ("get", f"/v1/jobs/{job_id}"),
        ("get", f"/v1/jobs/{job_id}/events"),
        ("post", f"/v1/jobs/{job_id}/cancel"),
    ]:
        assert client.request(method, path, headers=other_headers).status_code == 404
    stolen = submit(client, other_headers, {"base_model": "tiny-bert", "data": {"train": train_id}})
    assert stolen.status_code == 422 and "not found" in stolen.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"] == "queued"


def test_a_spec_that_is_not_an_object_is_422(client, headers):
    assert client.post("/v1/jobs", headers=headers, json=[1, 2]).status_code == 422
    assert (
        client.post(
            "/v1/jobs",
            headers=headers,
            content=b"{not json",
        ).status_code
        == 422
    )

"""More signal over HTTP with a real worker: an unlabeled upload feeding a masked-LM stage and
consistency, slices with metrics, an ensemble served as one model, and a student distilled from it."""

import pytest

from tests.e2e.conftest import Service
from tests.e2e.test_service_flow import submit, upload
from tests.utils.data import as_csv, sentiment

pytestmark = pytest.mark.slow

TEST_SET = sentiment(60, seed=9)
TRAINING = {"epochs": 3, "learning_rate": 1e-3, "batch_size": 16}


@pytest.fixture(scope="module")
def datasets(service: Service) -> dict[str, str]:
    unlabeled = "text\n" + "\n".join(sentiment(200, seed=4).texts) + "\n"
    return {
        "train": upload(service, "train.csv", as_csv(sentiment(200, seed=1))),
        "test": upload(service, "test.csv", as_csv(TEST_SET)),
        "unlabeled": upload(service, "unlabeled.csv", unlabeled.encode()),
    }


def predict(service: Service, model_id: str, texts: list[str]) -> list[dict]:
    response = service.client.post(f"/v1/models/{model_id}/predict", headers=service.headers, json={"inputs": texts})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def accuracy(predictions: list[dict]) -> float:
    return sum(p["label"] == gold for p, gold in zip(predictions, TEST_SET.labels, strict=True)) / len(TEST_SET)


@pytest.fixture(scope="module")
def ensemble(service: Service, datasets) -> dict:
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "data": {"train": datasets["train"], "test": datasets["test"]},
            "training": TRAINING,
            "ensemble": {"size": 2},
        },
    )
    return service.wait(job_id)


def test_an_unlabeled_upload_feeds_a_masked_lm_stage_consistency_and_slices(service, datasets):
    dataset = service.client.get(f"/v1/datasets/{datasets['unlabeled']}", headers=service.headers).json()
    assert dataset["label_field"] is None
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "data": {"train": datasets["train"], "test": datasets["test"]},
            "training": TRAINING,
            "stages": [{"objective": "masked_lm", "data": datasets["unlabeled"], "epochs": 2, "learning_rate": 1e-3}],
            "tasks": [{"name": "lm", "objective": "masked_lm", "weight": 0.3}],
            "consistency": {"data": datasets["unlabeled"]},
            "slices": [{"name": "short", "max_tokens": 6, "weight": 2.0}],
        },
    )
    job = service.wait(job_id)
    assert job["status"] == "succeeded", job["error"]
    stage = job["metrics"]["stages"][0]
    assert stage["objective"] == "masked_lm" and stage["held_out_loss_after"] < stage["held_out_loss_before"]
    assert job["metrics"]["slices"]["test"]["short"]["examples"] > 0
    events = service.client.get(f"/v1/jobs/{job_id}/events", headers=service.headers).json()["items"]
    kinds = [e["kind"] for e in events]
    assert kinds.index("stage_started") < kinds.index("stage_finished") < kinds.index("training_started")
    assert "slices" in kinds
    assert accuracy(predict(service, job["model_id"], TEST_SET.texts)) == pytest.approx(
        job["metrics"]["test"]["accuracy"]
    )


def test_an_ensemble_is_served_as_one_model_and_its_card_lists_members(service, ensemble):
    assert ensemble["status"] == "succeeded", ensemble["error"]
    members = ensemble["metrics"]["members"]
    assert [m["seed"] for m in members] == [0, 1]
    assert all("test" in m for m in members)
    model = service.client.get(f"/v1/models/{ensemble['model_id']}", headers=service.headers).json()
    assert [m["member"] for m in model["metrics"]["members"]] == [1, 2]
    predictions = predict(service, ensemble["model_id"], TEST_SET.texts)
    assert accuracy(predictions) == pytest.approx(ensemble["metrics"]["test"]["accuracy"])


def test_a_student_distilled_from_the_ensemble(service, datasets, ensemble):
    job_id = submit(
        service,
        {
            "base_model": "tiny-bert",
            "data": {"train": datasets["train"], "test": datasets["test"]},
            "training": TRAINING,
            "teacher": ensemble["model_id"],
            "student_layers": 1,
            "distillation": {"unlabeled": datasets["unlabeled"], "temperature": 2.0},
        },
    )
    job = service.wait(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["distillation"] == {"teacher": ensemble["model_id"], "student_layers": 1}
    model = service.client.get(f"/v1/models/{job['model_id']}", headers=service.headers).json()
    assert (
        model["total_params"]
        < service.client.get(f"/v1/models/{ensemble['model_id']}", headers=service.headers).json()["total_params"]
    )
    assert accuracy(predict(service, job["model_id"], TEST_SET.texts)) == pytest.approx(
        job["metrics"]["test"]["accuracy"]
    )

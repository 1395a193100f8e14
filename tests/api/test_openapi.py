"""The OpenAPI document shows the job spec a client submits: every field with its description, the
options of each registered unit, and examples that the service accepts as they are."""

import copy

import pytest

from app.api.routes.jobs import EXAMPLES
from app.schemas.spec import JobSpec
from tests.utils.data import as_csv, sentiment


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_submit_body_is_the_job_spec_with_its_field_descriptions(client):
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    spec = resolve(document, body["schema"])
    assert set(spec["properties"]) == set(JobSpec.model_fields)
    for name, field in JobSpec.model_fields.items():
        if field.description:
            assert spec["properties"][name]["description"] == field.description
    training = resolve(document, spec["properties"]["training"])
    assert "Peak learning rate" in training["properties"]["learning_rate"]["description"]
    # A unit's own options model is in the document: slanted_triangular's cut_frac, with its description.
    optimization = resolve(document, spec["properties"]["optimization"])
    schedules = [resolve(document, option) for option in optimization["properties"]["lr_schedule"]["oneOf"]]
    triangular = next(s for s in schedules if s["properties"]["name"].get("const") == "slanted_triangular")
    assert "Howard & Ruder" in triangular["properties"]["cut_frac"]["description"]
    assert set(body["examples"]) == set(EXAMPLES)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_every_example_is_accepted_with_the_tenants_own_datasets(client, headers, example):
    ids = {}
    for name in ("ds_train", "ds_test"):
        upload = client.post("/v1/datasets", headers=headers, files={"file": (f"{name}.csv", as_csv(sentiment(40)))})
        ids[name] = upload.json()["id"]
    spec = copy.deepcopy(EXAMPLES[example]["value"])
    spec["base_model"] = "tiny-bert"
    spec["data"] = {part: ids[dataset_id] for part, dataset_id in spec["data"].items()}
    response = client.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text


def test_a_partial_spec_that_leans_on_its_recipe_is_still_taken(client, headers):
    # No `name` in the unfreezing options: the ulmfit recipe names it (a bare JobSpec would refuse it).
    train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    spec = {
        "base_model": "tiny-bert",
        "recipe": "ulmfit",
        "data": {"train": train.json()["id"]},
        "optimization": {"unfreezing": {"thaw_fraction": 0.5}},
    }
    response = client.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text
    stored = client.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()["spec"]
    assert stored["optimization"]["unfreezing"] == {"name": "gradual", "every_steps": None, "thaw_fraction": 0.5}


def test_a_body_that_is_no_object_is_a_422_that_says_so(client, headers):
    response = client.post("/v1/jobs", headers=headers, json=["not", "a", "spec"])
    assert response.status_code == 422
    assert response.json()["detail"] == "the job spec must be a JSON object"

"""More-signal options at submission: every dataset and model they name is checked for the tenant,
columns and labels; a bad one is a 422 naming its field that creates nothing, and a dataset an active
job reads through them cannot be deleted."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select

from app.config import Settings
from app.db.models import Model, Tenant, new_id
from app.db.session import session_scope
from app.schemas.recipes import expand
from tests.utils.data import as_csv, sentiment


def upload(client, headers, content: bytes, filename: str = "d.csv", **form) -> str:
    response = client.post("/v1/datasets", headers=headers, files={"file": (filename, content)}, data=form)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def backend() -> str:
    """SQLite alone: what these tests check is refused before anything is written, by code that
    reads no backend's features; PostgreSQL's part of submitting a job is in test_jobs.py."""
    return "sqlite"


def submit(client, headers, spec):
    return client.post("/v1/jobs", headers=headers, json=spec)


def job_count(client, headers) -> int:
    return client.get("/v1/jobs", headers=headers).json()["total"]


@pytest.fixture
def ids(client, headers) -> dict[str, str]:
    """The tenant's datasets, by role: TRAIN (labels negative/positive), UNLABELED (text only),
    TOPICS (text + a `topic` column of two classes), ONE_CLASS, and BODY (text in `body`, unlabeled)."""
    return {
        "TRAIN": upload(client, headers, as_csv(sentiment(40))),
        "UNLABELED": upload(client, headers, b"text\nsome domain text\nmore domain text\n"),
        "TOPICS": upload(
            client, headers, b"text,topic\na game,sport\na vote,politics\na goal,sport\n", label_field="topic"
        ),
        "ONE_CLASS": upload(client, headers, b"text,label\na,x\nb,x\n"),
        "FIRST_ONE_CLASS": upload(client, headers, b"text,label\na,x\nb,x\nc,y\n"),
        "BODY": upload(client, headers, b"body\nsome text\n", text_field="body"),
    }


def add_model(settings: Settings, tenant: str, labels: list[str], task: str = "single_label", **options: Any) -> str:
    """A model row of `tenant` as a finished job leaves it (no artifact: submission reads the row)."""
    spec = expand({"base_model": "tiny-bert", "data": {"train": "ds_gone"}, **options}).model_dump(mode="json")
    spec["task"] = task
    model_id = new_id("mdl")
    with session_scope(settings.resolved_database_url) as session:
        tenant_id = session.scalars(select(Tenant.id).where(Tenant.name == tenant)).one()
        session.add(
            Model(
                id=model_id,
                tenant_id=tenant_id,
                job_id=new_id("job"),
                base_model="tiny-bert",
                spec=spec,
                labels=labels,
                metrics={},
                trainable_params=1,
                total_params=1,
                artifact_bytes=1,
            )
        )
    return model_id


@pytest.fixture
def models(settings, headers, other_headers) -> dict[str, str]:
    return {
        "TEACHER": add_model(settings, "acme", ["negative", "neutral", "positive"]),
        "MULTI": add_model(settings, "acme", ["negative", "positive"], task="multi_label"),
        "NARROW": add_model(settings, "acme", ["neutral", "positive"]),
        "THEIRS": add_model(settings, "globex", ["negative", "positive"]),
    }


def fill(value: Any, names: dict[str, str]) -> Any:
    """The spec with every placeholder string (TRAIN, TEACHER, ...) replaced by its id."""
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, names) for item in value]
    return names.get(value, value) if isinstance(value, str) else value


def job_spec(change: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return fill({"base_model": "tiny-bert", "data": {"train": "TRAIN"}, **copy.deepcopy(change)}, names)


def mlm(data: str, **options) -> dict[str, Any]:
    return {"objective": "masked_lm", "data": data, **options}


def classify(data: str, **options) -> dict[str, Any]:
    return {"objective": "classification", "data": data, **options}


BAD = [
    # ---- the main data ----
    (
        {"data": {"train": "UNLABELED"}},
        "data.train: dataset '{UNLABELED}' is unlabeled (no label column 'label'; the columns are: text); "
        "training a classifier needs labels",
    ),
    (
        {"data": {"train": "TRAIN", "validation": "UNLABELED"}},
        "data.validation: dataset '{UNLABELED}' is unlabeled (no label column 'label'; the columns are: text); "
        "evaluating the classifier needs labels",
    ),
    # ---- stages ----
    ({"stages": [mlm("ds_nope")]}, "stages.0.data: dataset 'ds_nope' not found"),
    (
        {"stages": [mlm("UNLABELED"), classify("UNLABELED")]},
        "stages.1.data: dataset '{UNLABELED}' is unlabeled (no label column 'label'; the columns are: text); "
        "a classification stage needs labels",
    ),
    (
        {"stages": [classify("TOPICS")]},
        "stages.0.data: dataset '{TOPICS}' (rows counted from 1): no label column 'label'; the columns are: "
        "text, topic",
    ),
    (
        {"stages": [mlm("UNLABELED", text_field="body")]},
        "stages.0.data: dataset '{UNLABELED}' (rows counted from 1): no text column 'body'; the columns are: text",
    ),
    (
        {"stages": [classify("ONE_CLASS")]},
        "stages.0.data: dataset '{ONE_CLASS}' has only one class in 'label' (x); a classification stage needs "
        "at least two",
    ),
    (
        {"stages": [classify("FIRST_ONE_CLASS", max_examples=2)]},
        "stages.0.data: dataset '{FIRST_ONE_CLASS}' has only one class in 'label' among its first 2 rows "
        "(max_examples) (x)",
    ),
    # ---- auxiliary tasks ----
    ({"tasks": [{"name": "topic", "data": "ds_nope"}]}, "tasks.0.data: dataset 'ds_nope' not found"),
    (
        {"tasks": [{"name": "lm", "objective": "masked_lm"}, {"name": "topic", "data": "UNLABELED"}]},
        "tasks.1.data: dataset '{UNLABELED}' is unlabeled (no label column 'label'; the columns are: text); "
        "a classification task needs labels",
    ),
    (
        {"tasks": [{"name": "lm", "objective": "masked_lm", "data": "BODY"}]},
        "tasks.0.data: dataset '{BODY}' (rows counted from 1): no text column 'text'; the columns are: body",
    ),
    (
        {"tasks": [{"name": "topic", "data": "ONE_CLASS"}]},
        "tasks.0.data: dataset '{ONE_CLASS}' has only one class in 'label' (x); a classification task needs",
    ),
    # ---- consistency ----
    ({"consistency": {"data": "ds_nope"}}, "consistency.data: dataset 'ds_nope' not found"),
    (
        {"consistency": {"data": "UNLABELED", "text_field": "body"}},
        "consistency.data: dataset '{UNLABELED}' (rows counted from 1): no text column 'body'",
    ),
    # ---- distillation ----
    ({"teacher": "mdl_nope"}, "teacher: model 'mdl_nope' not found"),
    ({"teacher": "THEIRS"}, "teacher: model '{THEIRS}' not found"),
    ({"teacher": "MULTI"}, "teacher: model '{MULTI}' is multi_label; distillation needs a single_label teacher"),
    (
        {"teacher": "NARROW"},
        "teacher: the labels 'negative' of data.train are not among the teacher's labels (neutral, positive)",
    ),
    (
        {"teacher": "TEACHER", "student_layers": 2},
        "student_layers: 2 must be fewer than the 2 layers of base_model 'tiny-bert'",
    ),
    (
        {"teacher": "TEACHER", "distillation": {"unlabeled": "ds_nope"}},
        "distillation.unlabeled: dataset 'ds_nope' not found",
    ),
    (
        {"teacher": "TEACHER", "distillation": {"unlabeled": "BODY"}},
        "distillation.unlabeled: dataset '{BODY}' (rows counted from 1): no text column 'text'",
    ),
    # ---- ensemble members ----
    (
        {"ensemble": {"members": [{}, {"base_model": "gpt-17"}]}},
        "ensemble.members.1.base_model: unknown base_model 'gpt-17'; the catalog has: minilm-l6, tiny-bert",
    ),
    (
        {
            "ensemble": {
                "members": [{"recipe": "ewc", "optimization": {"regularizers": [{"fisher_data": "ds_no"}]}}, {}]
            }
        },
        "ensemble.members.0.optimization.regularizers.0.fisher_data: dataset 'ds_no' not found",
    ),
    (
        {
            "ensemble": {
                "members": [
                    {},
                    {"optimization": {"regularizers": [{"name": "source_distillation", "source_model": "NARROW"}]}},
                ]
            }
        },
        "ensemble.members.1.optimization.regularizers.0.source_model: model '{NARROW}' must share",
    ),
    (
        {"ensemble": {"members": [{}, {"stages": [mlm("ds_nope")]}]}},
        "ensemble.members.1.stages.0.data: dataset 'ds_nope' not found",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[message.split(":")[0] for _, message in BAD])
def test_bad_inputs_are_422_name_the_field_and_create_nothing(client, headers, ids, models, change, message):
    names = {**ids, **models}
    before = job_count(client, headers)
    response = submit(client, headers, job_spec(change, names))
    assert response.status_code == 422, response.text
    assert message.format(**names) in response.json()["detail"]
    assert job_count(client, headers) == before


def test_another_tenants_dataset_is_not_found_in_any_signal_field(client, headers, other_headers, ids):
    theirs = upload(client, other_headers, b"text,label\na,x\nb,y\n")
    for change, field in [
        ({"stages": [classify(theirs)]}, "stages.0.data"),
        ({"tasks": [{"name": "lm", "objective": "masked_lm", "data": theirs}]}, "tasks.0.data"),
        ({"consistency": {"data": theirs}}, "consistency.data"),
    ]:
        response = submit(client, headers, job_spec(change, ids))
        assert response.status_code == 422, response.text
        assert f"{field}: dataset {theirs!r} not found" in response.json()["detail"]
    assert job_count(client, headers) == 0


def test_signal_options_on_the_tenants_data_are_accepted(client, headers, ids):
    change = {
        "stages": [mlm("UNLABELED"), classify("TOPICS", label_field="topic"), mlm("BODY", text_field="body")],
        "tasks": [
            {"name": "lm", "objective": "masked_lm"},
            {"name": "domain", "objective": "masked_lm", "data": "UNLABELED"},
            {"name": "topic", "data": "TOPICS", "label_field": "topic", "weight": 0.5},
        ],
        "consistency": {"data": "BODY", "text_field": "body"},
        "slices": [{"name": "short", "max_tokens": 4}],
    }
    response = submit(client, headers, job_spec(change, ids))
    assert response.status_code == 202, response.text
    spec = client.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()["spec"]
    assert [stage["data"] for stage in spec["stages"]] == [ids["UNLABELED"], ids["TOPICS"], ids["BODY"]]
    assert [task["data"] for task in spec["tasks"]] == [None, ids["UNLABELED"], ids["TOPICS"]]
    assert spec["consistency"]["data"] == ids["BODY"] and spec["slices"][0]["name"] == "short"


def test_a_student_of_the_tenants_teacher_is_accepted(client, headers, ids, models):
    change = {
        "teacher": "TEACHER",  # its labels cover train's (negative, positive) and one more
        "student_layers": 1,
        "distillation": {"unlabeled": "BODY", "unlabeled_text_field": "body", "temperature": 3},
    }
    response = submit(client, headers, job_spec(change, {**ids, **models}))
    assert response.status_code == 202, response.text
    spec = client.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()["spec"]
    assert spec["teacher"] == models["TEACHER"] and spec["student_layers"] == 1
    assert spec["distillation"]["unlabeled"] == ids["BODY"]


def test_an_ensemble_with_varied_members_is_accepted(client, headers, ids):
    change = {
        "recipe": "fine_tuning",
        "training": {"epochs": 2},
        "ensemble": {
            "members": [
                {"recipe": "adapters"},
                {"base_model": "minilm-l6", "stages": [mlm("UNLABELED")]},
                {"recipe": "ewc", "optimization": {"regularizers": [{"fisher_data": "UNLABELED"}]}},
            ]
        },
    }
    response = submit(client, headers, job_spec(change, ids))
    assert response.status_code == 202, response.text
    members = client.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()["spec"]["ensemble"]["members"]
    assert [m["recipe"] for m in members] == ["adapters", "fine_tuning", "ewc"]
    assert members[1]["base_model"] == "minilm-l6" and members[1]["stages"][0]["data"] == ids["UNLABELED"]


@pytest.mark.parametrize(
    ("change", "protected"),
    [
        ({"stages": [mlm("UNLABELED")]}, "UNLABELED"),
        ({"stages": [mlm("TRAIN"), classify("TOPICS", label_field="topic")]}, "TOPICS"),
        ({"tasks": [{"name": "domain", "objective": "masked_lm", "data": "UNLABELED"}]}, "UNLABELED"),
        ({"tasks": [{"name": "topic", "data": "TOPICS", "label_field": "topic"}]}, "TOPICS"),
        ({"consistency": {"data": "UNLABELED"}}, "UNLABELED"),
        ({"teacher": "TEACHER", "distillation": {"unlabeled": "UNLABELED"}}, "UNLABELED"),
        ({"ensemble": {"members": [{}, {"stages": [mlm("UNLABELED")]}]}}, "UNLABELED"),
    ],
    ids=["stage", "classification-stage", "task", "classification-task", "consistency", "distillation", "member"],
)
def test_a_dataset_an_active_job_reads_cannot_be_deleted(client, headers, ids, models, change, protected):
    response = submit(client, headers, job_spec(change, {**ids, **models}))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deleted = client.delete(f"/v1/datasets/{ids[protected]}", headers=headers)
    assert deleted.status_code == 409, deleted.text
    assert job_id in deleted.json()["detail"]
    client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert client.delete(f"/v1/datasets/{ids[protected]}", headers=headers).status_code == 204


def test_a_teacher_an_active_job_reads_cannot_be_deleted(client, headers, ids, models):
    response = submit(client, headers, job_spec({"teacher": "TEACHER"}, {**ids, **models}))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deleted = client.delete(f"/v1/models/{models['TEACHER']}", headers=headers)
    assert deleted.status_code == 409, deleted.text
    assert deleted.json()["detail"] == (
        f"model {models['TEACHER']!r} is in use by queued job {job_id!r}; cancel it first"
    )
    assert client.get(f"/v1/models/{models['TEACHER']}", headers=headers).status_code == 200
    client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert client.delete(f"/v1/models/{models['TEACHER']}", headers=headers).status_code == 204


def test_an_ensemble_cannot_anchor_source_distillation(settings, client, headers, ids):
    ensemble = add_model(settings, "acme", ["negative", "positive"], ensemble={"size": 2})
    regularizer = {"name": "source_distillation", "source_model": ensemble}
    spec = job_spec({"optimization": {"regularizers": [regularizer]}}, ids)
    before = len(client.get("/v1/jobs", headers=headers).json()["items"])
    response = submit(client, headers, spec)
    assert response.status_code == 422
    assert "optimization.regularizers.0.source_model" in response.json()["detail"]
    assert "is an ensemble" in response.json()["detail"]
    assert len(client.get("/v1/jobs", headers=headers).json()["items"]) == before
    # ...while distilling from it as a teacher is accepted.
    assert submit(client, headers, job_spec({"teacher": ensemble}, ids)).status_code == 202

"""Strategy options at the edge: conflicts are refused with a 422 that names them, and nothing is created."""

import pytest

from app.adaptation.schedules import SCHEDULES
from tests.utils.data import as_csv, sentiment


@pytest.fixture
def backend() -> str:
    """SQLite alone: what these tests check is refused before anything is written, by code that
    reads no backend's features; PostgreSQL's part of submitting a job is in test_jobs.py."""
    return "sqlite"


@pytest.fixture
def train_id(client, headers):
    return client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(sentiment(40)))}).json()["id"]


def submit(client, headers, spec):
    return client.post("/v1/jobs", headers=headers, json=spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"recipe": "feature_extraction", "optimization": {"unfreezing": "chain_thaw"}},
            "optimization.unfreezing 'chain_thaw' decides which layers train over time, which needs optimization.train "
            "'all', not 'head_only'",
        ),
        (
            {"model": {"adapters": {"size": 8}, "lora": {"target_modules": ["dense"]}}},
            "adapters and lora would both wrap the same modules (dense)",
        ),
        ({"recipe": "ewc"}, "optimization.regularizers.0.ewc.fisher_data: Field required"),
        ({"model": {"pooling": "attention"}}, "model.pooling: Input should be 'cls', 'max', 'mean' or 'scalar_mix'"),
        ({"optimization": {"train": "adapters"}}, "optimization.train 'adapters' needs model.adapters"),
        ({"optimization": {"train": "lora"}}, "optimization.train 'lora' needs model.lora"),
        (
            {"optimization": {"lr_schedule": "wavy"}},
            "optimization.lr_schedule: Input tag 'wavy' found using 'name' does not match any of the expected "
            "tags: " + ", ".join(repr(name) for name in SCHEDULES.names()),
        ),
        (
            {"optimization": {"unfreezing": {"name": "gradual", "every_steps": 0}}},
            "optimization.unfreezing.gradual.every_steps: Input should be greater than or equal to 1",
        ),
        (
            {"optimization": {"discriminative_decay": 0.5}},
            "optimization.discriminative_decay: Input should be greater than or equal to 1",
        ),
        (
            {"recipe": "ewc", "optimization": {"regularizers": [{"fisher_data": "ds_nope"}]}},
            "optimization.regularizers.0.fisher_data: dataset 'ds_nope' not found",
        ),
        (
            {"optimization": {"regularizers": [{"name": "source_distillation", "source_model": "mdl_nope"}]}},
            "optimization.regularizers.0.source_model: model 'mdl_nope' not found",
        ),
        ({"optimization": {"regularizers": ["dropout"]}}, "optimization.regularizers.0: Input tag 'dropout'"),
    ],
)
def test_conflicts_are_refused_by_name(client, headers, train_id, spec, message):
    response = submit(client, headers, {"base_model": "tiny-bert", "data": {"train": train_id}, **spec})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert client.get("/v1/jobs", headers=headers).json()["total"] == 0


@pytest.mark.parametrize(
    ("recipe", "check"),
    [
        (
            "adapters",
            lambda s: (
                s["model"]["adapters"] == {"placement": "houlsby", "size": 64}
                and s["optimization"]["train"] == "adapters"
            ),
        ),
        ("lora", lambda s: s["model"]["lora"]["r"] == 8 and s["optimization"]["train"] == "lora"),
        (
            "ulmfit",
            lambda s: (
                s["optimization"]["unfreezing"] == {"name": "gradual", "every_steps": None, "thaw_fraction": 0.25}
                and s["optimization"]["discriminative_decay"] == 2.6
                and s["optimization"]["lr_schedule"] == {"name": "slanted_triangular", "cut_frac": 0.1, "ratio": 32}
            ),
        ),
        (
            # Felbo et al. 2017: the whole model's last phase at 1e-4; it gets half the steps.
            "chain_thaw",
            lambda s: (
                s["optimization"]["unfreezing"] == {"name": "chain_thaw", "final_share": 0.5}
                and s["training"]["learning_rate"] == 1e-4
            ),
        ),
        ("sequential_unfreezing", lambda s: s["optimization"]["unfreezing"]["name"] == "sequential"),
        ("top_only", lambda s: s["optimization"]["unfreezing"] == {"name": "top_only"}),
        ("l2_sp", lambda s: s["optimization"]["regularizers"] == [{"name": "l2_sp", "alpha": 0.01, "beta": 0.01}]),
    ],
)
def test_every_recipe_expands_into_the_stored_spec(client, headers, train_id, recipe, check):
    response = submit(client, headers, {"base_model": "tiny-bert", "recipe": recipe, "data": {"train": train_id}})
    assert response.status_code == 202, response.text
    spec = client.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()["spec"]
    assert spec["recipe"] == recipe and check(spec)


def submit_ewc(client, headers, train_id):
    """An unlabeled dataset, and an ewc job that names it as Fisher data."""
    unlabeled = client.post("/v1/datasets", headers=headers, files={"file": ("u.csv", b"text\nsome text\n")}).json()
    spec = {
        "base_model": "tiny-bert",
        "recipe": "ewc",
        "data": {"train": train_id},
        "optimization": {"regularizers": [{"fisher_data": unlabeled["id"]}]},
    }
    return unlabeled, submit(client, headers, spec)


def test_ewc_with_its_fisher_data_is_accepted(client, headers, train_id):
    unlabeled, response = submit_ewc(client, headers, train_id)
    assert response.status_code == 202, response.text
    spec = client.get(f"/v1/jobs/{response.json()['id']}", headers=headers).json()["spec"]
    assert spec["optimization"]["regularizers"] == [
        {"name": "ewc", "weight": 100.0, "fisher_data": unlabeled["id"], "fisher_batches": 16}
    ]


def test_fisher_data_of_a_queued_job_cannot_be_deleted(client, headers, train_id):
    unlabeled, response = submit_ewc(client, headers, train_id)
    job = response.json()
    response = client.delete(f"/v1/datasets/{unlabeled['id']}", headers=headers)
    assert response.status_code == 409 and job["id"] in response.json()["detail"]

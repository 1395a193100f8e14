"""POST /v1/experiments: variants x seeds as jobs, all checked before any is queued, read as a leaderboard."""

import statistics

import pytest
from sqlalchemy import func, select, update

from app.db.models import Experiment, Job, Model, utcnow
from app.db.session import session_scope
from tests.utils.data import as_csv, sentiment


@pytest.fixture
def datasets(client, headers):
    def upload(rows):
        return client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", as_csv(rows))}).json()["id"]

    return upload(sentiment(40)), upload(sentiment(20, seed=5))


def experiment(datasets, **fields):
    train, test = datasets
    return {
        "data": {"train": train, "test": test},
        "base_model": "tiny-bert",
        "common": {"training": {"epochs": 1}},
        **fields,
    }


def counts(settings):
    with session_scope(settings.resolved_database_url) as session:
        return (
            session.scalar(select(func.count()).select_from(Job)),
            session.scalar(select(func.count()).select_from(Experiment)),
        )


def test_every_variant_runs_once_per_seed_over_the_shared_data(client, headers, datasets):
    body = experiment(
        datasets,
        recipes=["feature_extraction", "fine_tuning"],
        specs=[{"name": "adapters-wide", "spec": {"recipe": "adapters", "model": {"adapters": {"size": 32}}}}],
        seeds=[3, 7],
    )
    response = client.post("/v1/experiments", headers=headers, json=body)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] == "running" and created["seeds"] == [3, 7]
    runs = created["runs"]
    assert [(r["variant"], r["seed"]) for r in runs] == [
        (variant, seed) for variant in ("feature_extraction", "fine_tuning", "adapters-wide") for seed in (3, 7)
    ]
    for run in runs:
        spec = client.get(f"/v1/jobs/{run['job_id']}", headers=headers).json()["spec"]
        assert spec["training"]["seed"] == run["seed"] and spec["training"]["epochs"] == 1
        assert spec["data"]["train"] == datasets[0] and spec["data"]["test"] == datasets[1]
        assert spec["recipe"] == {"adapters-wide": "adapters"}.get(run["variant"], run["variant"])
        if run["variant"] == "adapters-wide":
            assert spec["model"]["adapters"]["size"] == 32
    rows = {row["variant"]: row for row in created["leaderboard"]}
    assert set(rows) == {"feature_extraction", "fine_tuning", "adapters-wide"}
    assert all(row["runs"] == 2 and row["finished"] == 0 and row["metrics"] == {} for row in rows.values())
    listed = client.get("/v1/experiments", headers=headers).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == created["id"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({}, "experiment: name at least one of `recipes` or `specs`"),
        ({"recipes": ["fine_tuning", "fine_tunning"]}, "recipes.1 (fine_tunning, seed 0): invalid job spec"),
        ({"specs": [{"spec": {"training": {"learning_rate": -1}}}]}, "specs.0.spec (spec 0, seed 0)"),
        ({"recipes": ["adapters"], "common": {"training": {"epochs": 0}}}, "training.epochs"),
        ({"recipes": ["adapters"], "seeds": 0}, "seeds"),
        ({"recipes": ["adapters"], "seeds": [1, 1]}, "seeds"),
        ({"recipes": ["adapters"] * 2}, "variant names must differ"),
        ({"recipes": ["adapters", "fine_tuning", "lora", "top_only", "ulmfit", "ewc", "l2_sp"], "seeds": 9}, "of 60"),
        ({"recipes": ["adapters"], "color": "red"}, "color"),
    ],
)
def test_a_bad_experiment_is_a_422_that_names_the_field_and_creates_nothing(
    client, headers, datasets, settings, fields, named
):
    response = client.post("/v1/experiments", headers=headers, json=experiment(datasets, **fields))
    assert response.status_code == 422, response.text
    assert named in response.json()["detail"]
    assert counts(settings) == (0, 0)


def test_another_tenants_dataset_is_refused_before_any_job_is_queued(
    client, headers, other_headers, datasets, settings
):
    theirs = client.post("/v1/datasets", headers=other_headers, files={"file": ("t.csv", as_csv(sentiment(40)))})
    body = experiment(datasets, recipes=["fine_tuning"], specs=[{"spec": {"data": {"test": theirs.json()["id"]}}}])
    response = client.post("/v1/experiments", headers=headers, json=body)
    assert response.status_code == 422 and "specs.0.spec" in response.json()["detail"]
    assert counts(settings) == (0, 0)


def test_experiments_are_the_tenants_own(client, headers, other_headers, datasets):
    created = client.post("/v1/experiments", headers=headers, json=experiment(datasets, recipes=["lora"], seeds=1))
    assert client.get(f"/v1/experiments/{created.json()['id']}", headers=other_headers).status_code == 404
    assert client.get("/v1/experiments", headers=other_headers).json()["total"] == 0
    assert client.get("/v1/experiments", headers={}).status_code == 401


def test_cancel_cancels_the_unfinished_runs(client, headers, datasets):
    created = client.post("/v1/experiments", headers=headers, json=experiment(datasets, recipes=["lora"], seeds=2))
    cancelled = client.post(f"/v1/experiments/{created.json()['id']}/cancel", headers=headers).json()
    assert cancelled["status"] == "cancelled"
    assert [run["status"] for run in cancelled["runs"]] == ["cancelled", "cancelled"]


def finish(settings, job_id, *, accuracy, macro_f1, seconds, trainable, peak, test=True, micro_f1=None):
    """What the worker writes when a job succeeds (the worker itself is exercised end to end in
    tests/e2e/test_cli_walkthrough.py; here the numbers must be known to check the arithmetic)."""
    scores = {"accuracy": accuracy, "macro_f1": macro_f1, **({"micro_f1": micro_f1} if micro_f1 is not None else {})}
    metrics = {"accuracy": 0.5, "macro_f1": 0.5, **({"test": scores} if test else scores)}
    with session_scope(settings.resolved_database_url) as session:
        model = Model(
            tenant_id=session.get(Job, job_id).tenant_id,
            job_id=job_id,
            base_model="tiny-bert",
            spec={},
            labels=["negative", "positive"],
            metrics=metrics,
            trainable_params=trainable,
            total_params=10_000,
            artifact_bytes=123,
            peak_memory_bytes=peak,
            train_seconds=seconds,
        )
        session.add(model)
        session.flush()
        values = dict(status="succeeded", metrics=metrics, train_seconds=seconds, model_id=model.id)
        session.execute(update(Job).where(Job.id == job_id).values(finished_at=utcnow(), **values))


def test_the_leaderboard_is_each_variants_mean_and_spread_best_first(client, headers, datasets, settings):
    body = experiment(datasets, recipes=["feature_extraction", "fine_tuning"], seeds=3)
    created = client.post("/v1/experiments", headers=headers, json=body).json()
    runs = {(r["variant"], r["seed"]): r["job_id"] for r in created["runs"]}
    accuracies = {"feature_extraction": [0.70, 0.74, 0.72], "fine_tuning": [0.90, 0.80]}
    for variant, values in accuracies.items():
        for seed, accuracy in enumerate(values):
            trainable = 66 if variant == "feature_extraction" else 9_000
            finish(
                settings,
                runs[(variant, seed)],
                accuracy=accuracy,
                macro_f1=accuracy - 0.1,
                seconds=10.0 * (seed + 1),
                trainable=trainable,
                peak=1000 * (seed + 1),
            )
    client.post(f"/v1/jobs/{runs[('fine_tuning', 2)]}/cancel", headers=headers)
    board = client.get(f"/v1/experiments/{created['id']}", headers=headers).json()
    assert board["status"] == "partial"
    first, second = board["leaderboard"]
    assert first["variant"] == "fine_tuning" and second["variant"] == "feature_extraction"
    assert (first["runs"], first["finished"]) == (3, 2) and (second["runs"], second["finished"]) == (3, 3)
    assert first["evaluated_on"] == "test" and first["ranked_by"] == second["ranked_by"] == "accuracy"
    assert first["metrics"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert first["metrics"]["accuracy"]["std"] == pytest.approx(statistics.stdev([0.9, 0.8]))
    assert first["metrics"]["macro_f1"]["values"] == pytest.approx([0.8, 0.7])
    assert second["metrics"]["accuracy"]["std"] == pytest.approx(0.02)
    assert second["train_seconds"] == {"mean": 20.0, "std": 10.0, "values": [10.0, 20.0, 30.0]}
    assert (first["trainable_params"], second["trainable_params"]) == (9_000, 66)
    assert second["peak_memory_bytes"]["mean"] == 2000


def test_without_test_data_the_board_reads_the_validation_metrics(client, headers, datasets, settings):
    body = experiment(datasets, recipes=["top_only"], seeds=1)
    body["data"].pop("test")
    created = client.post("/v1/experiments", headers=headers, json=body).json()
    job_id = created["runs"][0]["job_id"]
    finish(settings, job_id, accuracy=0.6, macro_f1=0.55, seconds=1.0, trainable=66, peak=None, test=False)
    (row,) = client.get(f"/v1/experiments/{created['id']}", headers=headers).json()["leaderboard"]
    assert row["evaluated_on"] == "validation" and row["metrics"]["accuracy"]["values"] == [0.6]
    assert row["metrics"]["accuracy"]["std"] is None and row["peak_memory_bytes"] is None


def test_multi_label_variants_are_ranked_by_micro_f1_not_subset_accuracy(client, headers, datasets, settings):
    # A multi-label report's accuracy is subset accuracy (every label of an example right): a variant
    # can be the better tagger by micro-F1 and still get fewer examples wholly right.
    body = experiment(datasets, recipes=["fine_tuning", "adapters"], seeds=1)
    created = client.post("/v1/experiments", headers=headers, json=body).json()
    runs = {r["variant"]: r["job_id"] for r in created["runs"]}
    finish(settings, runs["fine_tuning"], accuracy=0.40, micro_f1=0.90, macro_f1=0.8, seconds=1, trainable=1, peak=1)
    finish(settings, runs["adapters"], accuracy=0.45, micro_f1=0.60, macro_f1=0.5, seconds=1, trainable=1, peak=1)
    board = client.get(f"/v1/experiments/{created['id']}", headers=headers).json()["leaderboard"]
    assert [row["variant"] for row in board] == ["fine_tuning", "adapters"]
    assert [row["ranked_by"] for row in board] == ["micro_f1", "micro_f1"]

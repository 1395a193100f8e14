"""The README's walkthrough as a new user runs it: `thaw` in a real subprocess against a real API
and worker; upload TREC, start a job, watch its progress bar to the end, run an experiment of three
recipes and read its leaderboard, call the model from Python. (The tiny random BERT stands in for
MiniLM so this runs in a minute; tests/adaptation/test_real_minilm.py covers the real encoder.)"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import Thaw
from tests.conftest import build_settings
from tests.utils.live_api import live_api
from tests.utils.services import ROOT, WorkerProcess, service_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_model_dir) -> Iterator[tuple[str, dict[str, str]]]:
    settings = build_settings(tmp_path_factory.mktemp("walkthrough") / "var", {"tiny-bert": tiny_model_dir})
    worker = WorkerProcess(settings)
    try:
        worker.wait_ready()
        with live_api(settings) as url:
            env = service_env(settings) | {"THAW_URL": url, "THAW_CONFIG": str(settings.var_dir / "cli.toml")}
            yield url, env
    finally:
        worker.stop()


def thaw(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "app.cli", *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"thaw {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def split_sample(directory: Path) -> tuple[Path, Path, list[dict[str, str]]]:
    """The TREC sample the repo ships, as 320 rows to train on and 80 to test on."""
    with (ROOT / "examples" / "trec-sample.csv").open() as file:
        rows = list(csv.DictReader(file))
    paths = directory / "train.csv", directory / "test.csv"
    for path, part in zip(paths, (rows[:320], rows[320:]), strict=True):
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(part)
    return *paths, rows[320:]


def test_a_new_user_goes_from_upload_to_predictions(service, tmp_path):
    url, env = service
    key = thaw(env, "keys", "create", "--tenant", "walkthrough").stdout.strip()
    thaw(env, "login", "--url", url, "--key", key)  # later commands read the saved key
    train_csv, test_csv, test_rows = split_sample(tmp_path)
    train = json.loads(thaw(env, "datasets", "upload", str(train_csv), "--label-field", "label", "--json").stdout)
    test_id = thaw(env, "datasets", "upload", str(test_csv), "--label-field", "label", "-q").stdout.strip()
    test = json.loads(thaw(env, "datasets", "get", test_id, "--json").stdout)
    assert train["rows"] == 320 and test["rows"] == 80 and len(train["label_counts"]) == 6

    common = ["--train", train["id"], "--test", test["id"], "--base-model", "tiny-bert", "--epochs", "3"]
    job_id = thaw(env, "jobs", "create", *common, "--learning-rate", "0.001", "--batch-size", "16").stdout.strip()
    watched = thaw(env, "jobs", "watch", job_id)
    job = json.loads(thaw(env, "jobs", "get", job_id, "--json").stdout)
    # The bar's last frame: every step of the run, its last epoch, the loss and the last epoch's
    # validation accuracy; then the job's card.
    steps, last = job["progress"]["total_steps"], job["metrics"]["history"][-1]
    bar = watched.stderr  # stdout holds only the job's card
    assert "epoch 3/3 " in bar and f"{steps}/{steps}" in bar, bar
    assert f"val acc {last['accuracy']:.3f}" in bar and "loss " in bar
    assert "status      succeeded" in watched.stdout and "epoch 3/3" not in watched.stdout

    # From Python: the model's predictions on the test rows score exactly the reported test accuracy.
    with Thaw(url, key) as client:
        predictions = client.predict(job["model_id"], [row["text"] for row in test_rows])
    hits = sum(p.label == row["label"] for p, row in zip(predictions, test_rows, strict=True))
    assert hits / len(test_rows) == pytest.approx(job["metrics"]["test"]["accuracy"])
    predicted = thaw(env, "predict", job["model_id"], test_rows[0]["text"], "--json").stdout
    assert json.loads(predicted)[0]["label"] == predictions[0].label

    board = thaw(env, "experiments", "create", *common, "--recipes", "feature_extraction,fine_tuning,adapters",
                 "--seeds", "1", "--watch")  # fmt: skip
    for variant in ("feature_extraction", "fine_tuning", "adapters"):
        assert variant in board.stdout
    assert board.stdout.count("1/1") == 3 and "succeeded" in board.stdout
    experiment_id = json.loads(thaw(env, "experiments", "list", "--json").stdout)["items"][0]["id"]
    experiment = json.loads(thaw(env, "experiments", "get", experiment_id, "--json").stdout)
    for row in experiment["leaderboard"]:
        (run,) = [r for r in experiment["runs"] if r["variant"] == row["variant"]]
        ran = json.loads(thaw(env, "jobs", "get", run["job_id"], "--json").stdout)
        assert row["metrics"]["accuracy"]["values"] == [ran["metrics"]["test"]["accuracy"]]
        assert f"{100 * ran['metrics']['test']['accuracy']:.1f}" in board.stdout
    trainable = {row["variant"]: row["trainable_params"] for row in experiment["leaderboard"]}
    # The tutorial's trade-off, measured: a frozen encoder trains only the head, adapters a little more.
    assert trainable["feature_extraction"] < trainable["adapters"] < trainable["fine_tuning"]

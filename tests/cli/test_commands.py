"""The API commands of `thaw` against the API over real HTTP: what they print, what they send, and
a refusal shown as the API's message with exit code 1."""

import json
import threading
import time

import pytest
from typer.testing import CliRunner

from app.cli import cli, hoist_connection_options
from app.cli.watch import describe
from app.schemas.resources import JobPublic
from tests.utils.data import as_csv, sentiment
from tests.utils.services import free_port, new_key


@pytest.fixture
def run(api_url, client_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("THAW_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("THAW_URL", api_url)
    monkeypatch.setenv("THAW_API_KEY", new_key(client_settings, "acme"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def train_csv(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(as_csv(sentiment(40)))
    return path


def test_upload_then_list_and_get(run, train_csv):
    uploaded = run("datasets", "upload", str(train_csv), "--label-field", "label", "--json")
    assert uploaded.exit_code == 0, uploaded.output
    dataset = json.loads(uploaded.stdout)
    assert dataset["rows"] == 40 and dataset["label_field"] == "label"
    shown = run("datasets", "get", dataset["id"])
    assert "label field  label" in shown.stdout and f"id           {dataset['id']}" in shown.stdout
    listed = run("datasets", "list")
    assert "1 datasets" in listed.stdout and dataset["id"] in listed.stdout


def test_jobs_create_lays_flags_over_the_spec_file_and_set_over_both(run, train_csv, tmp_path):
    train = json.loads(run("datasets", "upload", str(train_csv), "--label-field", "label", "--json").stdout)["id"]
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"base_model: tiny-bert\nrecipe: adapters\ndata:\n  train: {train}\n"
        "training:\n  epochs: 5\n  batch_size: 8\nmodel:\n  pooling: mean\n"
    )
    created = run("jobs", "create", "--spec", str(spec), "--epochs", "2", "--set", "model.pooling=cls", "--set",
                  "training.batch_size=4")  # fmt: skip
    assert created.exit_code == 0, created.output
    job_id = created.stdout.strip()
    job = json.loads(run("jobs", "get", job_id, "--json").stdout)
    assert job["recipe"] == "adapters" and job["spec"]["data"]["train"] == train
    assert job["spec"]["training"]["epochs"] == 2 and job["spec"]["training"]["batch_size"] == 4
    assert job["spec"]["model"]["pooling"] == "cls"
    assert job_id in run("jobs", "list").stdout
    assert "queued" in run("jobs", "events", job_id).stdout
    cancelled = run("jobs", "cancel", job_id)
    assert cancelled.stdout.strip() == f"{job_id} cancelled"
    # Watching a job that ended other than succeeded shows it and exits 1.
    watched = run("jobs", "watch", job_id)
    assert watched.exit_code == 1 and "status      cancelled" in watched.stdout


def test_a_refusal_prints_the_apis_message_and_exits_1(run, train_csv):
    train = json.loads(run("datasets", "upload", str(train_csv), "--label-field", "label", "--json").stdout)["id"]
    bad = run("jobs", "create", "--train", train, "--base-model", "tiny-bert", "--learning-rate", "-1")
    assert bad.exit_code == 1 and bad.stdout == ""
    assert "error: 422: invalid job spec: training.learning_rate" in bad.stderr
    missing = run("predict", "mdl_nope", "some text")
    assert missing.exit_code == 1 and "error: 404: model 'mdl_nope' not found" in missing.stderr
    no_data = run("jobs", "create", "--recipe", "adapters")
    assert no_data.exit_code == 2 and "--train" in no_data.stderr


def test_experiments_create_and_show_the_leaderboard(run, train_csv):
    train = json.loads(run("datasets", "upload", str(train_csv), "--label-field", "label", "--json").stdout)["id"]
    created = run("experiments", "create", "--train", train, "--base-model", "tiny-bert", "--recipes",
                  "top_only,lora,adapters", "--seeds", "2", "--epochs", "1")  # fmt: skip
    assert created.exit_code == 0, created.output
    experiment_id = created.stdout.strip()
    board = run("experiments", "get", experiment_id)
    assert experiment_id in board.stdout and "running" in board.stdout
    for variant in ("top_only", "lora", "adapters"):
        assert f"{variant}" in board.stdout and "0/2" in board.stdout
    assert run("experiments", "cancel", experiment_id).stdout.strip() == f"{experiment_id} cancelled"
    assert experiment_id in run("experiments", "list").stdout


def test_login_saves_the_url_and_key_for_later_commands(api_url, client_settings, monkeypatch, tmp_path):
    config = tmp_path / "thaw.toml"
    monkeypatch.setenv("THAW_CONFIG", str(config))
    monkeypatch.delenv("THAW_URL", raising=False)
    monkeypatch.delenv("THAW_API_KEY", raising=False)
    runner = CliRunner()
    key = new_key(client_settings, "acme")
    saved = runner.invoke(cli, ["login", "--url", api_url], input=f"{key}\n")
    assert saved.exit_code == 0, saved.output
    assert key in config.read_text() and api_url in config.read_text()
    listed = runner.invoke(cli, ["datasets", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["total"] == 0


def test_no_service_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("THAW_CONFIG", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(cli, ["--url", f"http://127.0.0.1:{free_port()}", "--key", "k", "jobs", "list"])
    assert result.exit_code == 1 and "error: no answer from http://127.0.0.1:" in result.stderr


@pytest.mark.parametrize(
    ("written", "parsed"),
    [
        (["jobs", "list", "--url", "U", "--key", "K"], ["--url", "U", "--key", "K", "jobs", "list"]),
        (["predict", "M", "a text", "--key=K"], ["--key=K", "predict", "M", "a text"]),
        (["--url", "U", "jobs", "get", "J", "--key", "K"], ["--url", "U", "--key", "K", "jobs", "get", "J"]),
        (["predict", "M", "--", "--url", "x"], ["predict", "M", "--", "--url", "x"]),  # texts, after --
        (["login", "--url", "U", "--key", "K"], ["login", "--url", "U", "--key", "K"]),  # login's own
        (["--url", "U", "login", "--key", "K"], ["--url", "U", "login", "--key", "K"]),
    ],
)
def test_url_and_key_may_follow_the_subcommand(written, parsed):
    assert hoist_connection_options(written) == parsed


def test_a_command_with_url_and_key_after_it_reaches_the_service(api_url, client_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("THAW_CONFIG", str(tmp_path / "none.toml"))  # nothing else to find them in
    monkeypatch.delenv("THAW_URL", raising=False)
    monkeypatch.delenv("THAW_API_KEY", raising=False)
    key = new_key(client_settings, "acme")
    args = hoist_connection_options(["datasets", "list", "--json", "--url", api_url, "--key", key])
    listed = CliRunner().invoke(cli, args)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["total"] == 0


def test_seed_0_is_a_value_not_a_missing_flag(run, train_csv, tmp_path):
    train = json.loads(run("datasets", "upload", str(train_csv), "--label-field", "label", "--json").stdout)["id"]
    spec = tmp_path / "job.yaml"
    spec.write_text(f"base_model: tiny-bert\ndata:\n  train: {train}\ntraining:\n  seed: 7\n")
    created = run("jobs", "create", "--spec", str(spec), "--seed", "0")
    assert created.exit_code == 0, created.output
    job = json.loads(run("jobs", "get", created.stdout.strip(), "--json").stdout)
    assert job["spec"]["training"]["seed"] == 0


def test_create_watch_json_prints_one_json_document_the_bar_goes_to_stderr(run, train_csv, thaw):
    train = json.loads(run("datasets", "upload", str(train_csv), "--label-field", "label", "--json").stdout)["id"]

    def cancel_once_queued() -> None:  # no worker here: the job ends by being cancelled
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queued = thaw.jobs(status="queued").items
            if queued:
                thaw.cancel_job(queued[0].id)
                return
            time.sleep(0.1)

    canceller = threading.Thread(target=cancel_once_queued)
    canceller.start()
    watched = run("jobs", "create", "--train", train, "--base-model", "tiny-bert", "--watch", "--json")
    canceller.join()
    assert watched.exit_code == 1  # it did not succeed
    job = json.loads(watched.stdout)  # the whole of stdout: the finished job, nothing else
    assert job["status"] == "cancelled" and job["id"] in watched.stderr


def test_the_bar_names_a_paused_or_requeued_jobs_status_not_its_last_stage():
    progress = {"stage": "train", "epoch": 2, "epochs": 3, "step": 40, "total_steps": 60, "loss": 0.5}
    for status, shown in (("running", "train"), ("paused", "paused"), ("queued", "queued")):
        described = describe(JobPublic.model_construct(status=status, progress=progress), None)
        assert described["what"] == f"{shown} epoch 2/3"

"""`thaw models evaluate`, `thaw predictions`, `thaw predict --file` (chunked, or a batch job past
--batch-above) and `thaw jobs checkpoints`, through the client, against the API over real HTTP. The
runs are run by the worker's own code (worker/model_runs.py) from a thread that takes each queued run,
as a worker takes its messages; the end-to-end run with a worker process is in tests/e2e."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.client import Thaw
from app.db.models import Job, JobEvent, ModelRun
from app.db.session import session_scope
from tests.api.test_metrics import tenant_id
from tests.cli.test_commands import run  # noqa: F401 - the `run` fixture: thaw against the live API
from tests.utils.data import as_csv, sentiment
from tests.utils.services import new_key
from tests.utils.trained import publish_trained, train_and_save
from worker.model_runs import run_model_run

TEST_SET = sentiment(30, seed=3)


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_and_save(tiny_model_dir, {}, tmp_path_factory.mktemp("model"), rows=64)


@pytest.fixture
def model_id(client_settings, run, trained) -> str:  # noqa: F811 - `run` makes tenant acme's key first
    return publish_trained(client_settings, tenant_id(client_settings, "acme"), "mdl_cli", trained)


@pytest.fixture
def worker(client_settings) -> Iterator[None]:
    """Runs every queued model run, oldest first, until the test ends."""
    stop = threading.Event()

    def take() -> None:
        while not stop.wait(0.1):
            with session_scope(client_settings.resolved_database_url) as session:
                queued = session.scalars(select(ModelRun.id).where(ModelRun.status == "queued")).all()
            for run_id in queued:
                run_model_run(client_settings, run_id)

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=30)


@pytest.fixture
def thaw(api_url, client_settings) -> Iterator[Thaw]:
    with Thaw(api_url, new_key(client_settings, "acme")) as client:
        yield client


def upload(run, path: Path, content: bytes, *flags: str) -> str:  # noqa: F811
    path.write_bytes(content)
    uploaded = run("datasets", "upload", str(path), *flags, "-q")
    assert uploaded.exit_code == 0, uploaded.output
    return uploaded.stdout.strip()


def test_models_evaluate_prints_the_report_the_client_reads(run, model_id, worker, thaw, tmp_path):  # noqa: F811
    dataset = upload(run, tmp_path / "test.csv", as_csv(TEST_SET), "--label-field", "label")
    shown = run("models", "evaluate", model_id, dataset, "--json")
    assert shown.exit_code == 0, shown.output
    evaluation = json.loads(shown.stdout)
    assert evaluation["status"] == "succeeded" and evaluation["result"]["examples"] == 30
    served = thaw.predict(model_id, TEST_SET.texts)
    correct = sum(p.label == gold for p, gold in zip(served, TEST_SET.labels, strict=True))
    assert evaluation["result"]["accuracy"] == correct / 30
    table = run("models", "evaluate", model_id, dataset)
    assert table.exit_code == 0 and f"{100 * correct / 30:.1f}%" in table.stdout and "confusion" in table.stdout
    listed = run("models", "evaluations", model_id)
    assert listed.exit_code == 0 and "2 evaluations" in listed.stdout
    again = thaw.wait_run(thaw.evaluate(model_id, dataset))
    assert again.result == evaluation["result"] and len(thaw.evaluations(model_id).items) == 3


def test_predictions_create_writes_every_row_to_the_file(run, model_id, worker, thaw, tmp_path):  # noqa: F811
    dataset = upload(run, tmp_path / "test.csv", as_csv(TEST_SET), "--label-field", "label")
    out = tmp_path / "rows.csv"
    made = run("predictions", "create", model_id, dataset, "-o", str(out), "--format", "csv")
    assert made.exit_code == 0, made.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["text"] for row in rows] == TEST_SET.texts
    assert [row["label"] for row in rows] == [p.label for p in thaw.predict(model_id, TEST_SET.texts)]
    (listed,) = thaw.predictions().items
    printed = run("predictions", "download", listed.id)
    assert [json.loads(line)["row"] for line in printed.stdout.splitlines()] == list(range(1, 31))


def test_predict_sends_a_long_file_in_chunks_under_the_request_limit(run, model_id, thaw, tmp_path):  # noqa: F811
    texts = [f"{TEST_SET.texts[i % 30]} {i}" for i in range(300)]  # over the 256 texts one request takes
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts))
    shown = run("predict", model_id, "--file", str(lines), "--json")
    assert shown.exit_code == 0, shown.output
    labels = [p["label"] for p in json.loads(shown.stdout)]
    assert labels == [p.label for p in thaw.predict(model_id, texts[:256]) + thaw.predict(model_id, texts[256:])]


def test_predict_hands_a_file_past_batch_above_to_a_batch_job_and_cleans_up(run, model_id, worker, thaw, tmp_path):  # noqa: F811
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEST_SET.texts))
    shown = run("predict", model_id, "--file", str(lines), "--batch-above", "10", "--json")
    assert shown.exit_code == 0, shown.output
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [row["text"] for row in rows] == TEST_SET.texts
    assert [row["label"] for row in rows] == [p.label for p in thaw.predict(model_id, TEST_SET.texts)]
    assert thaw.predictions().total == 0 and thaw.datasets().total == 0  # its upload and run are removed
    refused = run("predict", model_id, "--file", str(lines), "--batch-above", "10", "--abstain-below", "0.6")
    assert refused.exit_code != 0 and "--abstain-below" in refused.output


def test_jobs_checkpoints_marks_the_kept_epoch(run, client_settings, thaw):  # noqa: F811
    acme = tenant_id(client_settings, "acme")
    with session_scope(client_settings.resolved_database_url) as session:
        session.add(
            Job(id="job_ckpt", tenant_id=acme, status="succeeded", spec={"training": {"eval_metric": "macro_f1"}})
        )
        session.flush()
        for epoch, (accuracy, f1) in enumerate([(0.7, 0.6), (0.8, 0.75), (0.9, 0.7), (0.9, 0.75)], start=1):
            data = {"epoch": epoch, "step": 10 * epoch, "accuracy": accuracy, "macro_f1": f1, "train_loss": 1 / epoch}
            session.add(JobEvent(job_id="job_ckpt", kind="evaluated", message=f"epoch {epoch}", data=data))
    checkpoints = thaw.checkpoints("job_ckpt")
    # macro_f1 chose: epoch 2 and 4 tie at 0.75, and the first best stays (as the trainer keeps it).
    assert [c.best for c in checkpoints] == [False, True, False, False]
    assert [c.step for c in checkpoints] == [10, 20, 30, 40] and checkpoints[3].train_loss == 0.25
    shown = run("jobs", "checkpoints", "job_ckpt")
    assert shown.exit_code == 0 and "4 checkpoints" in shown.stdout
    starred = [line for line in shown.stdout.splitlines() if "*" in line]
    assert len(starred) == 1 and "75.0%" in starred[0]

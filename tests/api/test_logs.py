"""Structured logs: one JSON object per line, with the request's id in the API and the job's in a worker."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from app.logs import JsonFormatter, configure_logging, job_context, request_id
from app.queue import TRAIN_TASK, make_celery
from tests.conftest import build_settings
from tests.utils.services import WorkerProcess, wait_for


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    """A stream for `configure_logging` to write to, in place of stderr; its handler is removed afterwards."""
    buffer = io.StringIO()
    yield buffer
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "stream", None) is buffer]:
        root.removeHandler(handler)


@pytest.fixture
def sqlite_settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    return build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})


@pytest.fixture
def client(sqlite_settings: Settings, stderr: io.StringIO) -> Iterator[TestClient]:
    """The API, logging JSON to `stderr`, with a route that logs from the threadpool."""
    app = create_app(sqlite_settings)
    configure_logging(sqlite_settings, stderr)  # as create_app did, onto the buffer

    def shout() -> dict:
        logging.getLogger("tests.route").warning("inside the route", extra={"answer": 42})
        return {}

    app.add_api_route("/_shout", shout)
    with TestClient(app) as test_client:
        yield test_client


def access_lines(stderr: io.StringIO) -> list[dict]:
    return [line for line in json_lines(stderr.getvalue()) if line["logger"] == "app.api.access"]


def test_each_request_gets_an_id_in_its_response_and_its_json_access_line(client, stderr):
    response = client.get("/v1/jobs")  # no key: 401
    assert response.status_code == 401
    rid = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    [line] = access_lines(stderr)
    assert line["request_id"] == rid
    assert (line["level"], line["method"], line["path"], line["status"]) == ("INFO", "GET", "/v1/jobs", 401)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["message"].startswith("GET /v1/jobs 401 ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])


def test_a_callers_request_id_is_echoed_and_an_odd_one_replaced(client, stderr):
    echoed = client.get("/v1/jobs", headers={"X-Request-ID": "checkout-7f3a:2"})
    assert echoed.headers["X-Request-ID"] == "checkout-7f3a:2"
    replaced = client.get("/v1/jobs", headers={"X-Request-ID": "no spaces {or} braces"})
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])
    assert [line["request_id"] for line in access_lines(stderr)] == [
        "checkout-7f3a:2",
        replaced.headers["X-Request-ID"],
    ]


def test_lines_logged_while_serving_a_request_carry_its_id(client, stderr):
    response = client.get("/_shout", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 200
    [inside] = [line for line in json_lines(stderr.getvalue()) if line["logger"] == "tests.route"]
    assert inside == {**inside, "request_id": "r-1", "level": "WARNING", "message": "inside the route", "answer": 42}
    assert "job_id" not in inside


def record_json(logger: logging.Logger, message: str, **extra) -> dict:
    """The JSON line of one record, written by a handler of its own."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        logger.warning(message, extra=extra)
    finally:
        logger.removeHandler(handler)
    [line] = json_lines(buffer.getvalue())
    return line


def test_lines_logged_in_a_job_context_carry_the_job_id():
    log = logging.getLogger("tests.job")
    with job_context("job_1"):
        inside = record_json(log, "step done", step=3)
    outside = record_json(log, "idle")
    assert (inside["job_id"], inside["step"], inside["message"]) == ("job_1", 3, "step done")
    assert "job_id" not in outside and "request_id" not in outside


def test_an_exception_is_written_in_its_line():
    log = logging.getLogger("tests.failing")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("it failed")
    finally:
        log.removeHandler(handler)
    [line] = json_lines(buffer.getvalue())
    assert line["message"] == "it failed" and "ValueError: bad value" in line["exception"]


def test_text_format_writes_the_ids_after_the_message(sqlite_settings, stderr):
    configure_logging(sqlite_settings.model_copy(update={"log_format": "text"}), stderr)
    token = request_id.set("r-9")
    try:
        with job_context("job_9"):
            logging.getLogger("tests.text").warning("hello %s", "there", extra={"step": 3})
    finally:
        request_id.reset(token)
    [line] = stderr.getvalue().splitlines()
    assert line.endswith(" WARNING tests.text: hello there [request_id=r-9 job_id=job_9 step=3]")


def test_configuring_twice_writes_each_line_once(sqlite_settings, stderr):
    configure_logging(sqlite_settings, stderr)
    configure_logging(sqlite_settings, stderr)
    logging.getLogger("tests.twice").warning("once")
    assert len(stderr.getvalue().splitlines()) == 1


def test_a_jobs_own_lines_and_its_heartbeat_threads_carry_its_id(sqlite_settings, stderr):
    from worker.runner import Heartbeat, run_job

    configure_logging(sqlite_settings, stderr)
    run_job(sqlite_settings, "job_gone")  # nothing to claim: it says so, and returns
    with job_context("job_beating"), Heartbeat("sqlite:////nonexistent/thaw.sqlite", "job_beating", 1, 0.01):
        time.sleep(0.1)  # its beats fail: the database is unreachable
    lines = json_lines(stderr.getvalue())
    [not_queued] = [line for line in lines if "is not queued" in line["message"]]
    assert not_queued["job_id"] == "job_gone"
    beats = [line for line in lines if line["message"].startswith("database unreachable, heartbeat skipped")]
    assert beats and {line["job_id"] for line in beats} == {"job_beating"}


@pytest.mark.slow
def test_a_worker_writes_json_lines_with_the_job_id(sqlite_settings):
    worker = WorkerProcess(sqlite_settings)
    try:
        worker.wait_ready()
        make_celery(sqlite_settings).send_task(TRAIN_TASK, args=["job_gone"], queue=sqlite_settings.queue)

        def not_queued_line() -> dict | None:
            for line in worker.log_path.read_text().splitlines():
                if "is not queued" in line:
                    return json.loads(line)
            return None

        line = wait_for(not_queued_line, timeout=60)
    finally:
        worker.stop()
    assert (line["job_id"], line["logger"], line["level"]) == ("job_gone", "worker.runner", "INFO")
    ready = next(text for text in worker.log_path.read_text().splitlines() if "ready." in text)
    assert json.loads(ready)["message"].endswith("ready.")

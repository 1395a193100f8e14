"""`from app.client import Thaw` against the API over real HTTP: typed answers, and every refusal
an exception carrying the API's own message."""

import io
import time

import httpx
import pytest

from app.client import (
    Conflict,
    InvalidRequest,
    JobFailed,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Thaw,
    TooLarge,
    Unauthorized,
)
from app.client.config import Connection, write_config
from app.schemas.resources import DatasetPublic, ExperimentPublic, JobPublic
from tests.utils.data import as_csv, sentiment
from tests.utils.services import free_port


@pytest.fixture
def train(thaw, tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(as_csv(sentiment(40)))
    return thaw.upload_dataset(path, label_field="label")


def test_upload_from_a_path_or_a_file_object_gives_typed_datasets(thaw, train):
    assert isinstance(train, DatasetPublic)
    counts = {label: sentiment(40).labels.count(label) for label in ("negative", "positive")}
    assert train.name == "train.csv" and train.rows == 40 and train.label_counts == counts
    unlabeled = thaw.upload_dataset(io.BytesIO(b"text\nhello\nworld\n"), name="raw", filename="raw.csv")
    assert unlabeled.label_field is None and unlabeled.rows == 2
    assert [d.id for d in thaw.datasets().items] == [unlabeled.id, train.id]
    assert thaw.dataset(train.id) == train
    thaw.delete_dataset(unlabeled.id)
    with pytest.raises(NotFound, match=unlabeled.id):
        thaw.dataset(unlabeled.id)


def test_jobs_round_trip_and_wait_ends_in_the_jobs_own_error(thaw, train):
    created = thaw.create_job({"base_model": "tiny-bert", "data": {"train": train.id}, "recipe": "adapters"})
    job = thaw.job(created.id)
    assert isinstance(job, JobPublic) and job.recipe == "adapters" and job.status == "queued"
    assert [j.id for j in thaw.jobs(status="queued").items] == [created.id]
    assert [e.kind for e in thaw.events(created.id)] == ["queued"]
    # No worker runs in this test: cancelling ends the queued job at once, and wait() says so.
    assert thaw.cancel_job(created.id).status == "cancelled"
    seen = []
    with pytest.raises(JobFailed, match=f"job {created.id} cancelled") as failed:
        thaw.wait(created.id, on_progress=seen.append, poll_seconds=0.05)
    assert failed.value.job.status == "cancelled" and [j.status for j in seen] == ["cancelled"]
    assert thaw.wait(created.id, raise_on_failure=False).status == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        thaw.cancel_job(created.id)


def test_wait_gives_up_after_its_timeout(thaw, train):
    created = thaw.create_job({"base_model": "tiny-bert", "data": {"train": train.id}})
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still queued"):
        thaw.wait(created.id, timeout=0.3, poll_seconds=0.1)
    assert time.monotonic() - started >= 0.3


def test_refusals_are_exceptions_with_the_apis_message(thaw, train, api_url):
    with pytest.raises(InvalidRequest, match="training.learning_rate") as bad:
        thaw.create_job({"base_model": "tiny-bert", "data": {"train": train.id}, "training": {"learning_rate": -1}})
    assert bad.value.status_code == 422
    with pytest.raises(InvalidRequest, match="label_field"):
        thaw.create_job({"base_model": "tiny-bert", "data": {"train": train.id}, "label_field": "nope"})
    with pytest.raises(NotFound, match="job 'job_nope' not found"):
        thaw.job("job_nope")
    with pytest.raises(TooLarge, match="over the limit of 20000 bytes"):
        thaw.upload_dataset(io.BytesIO(as_csv(sentiment(2000))), label_field="label", filename="big.csv")
    with Thaw(api_url, "thaw_not_a_key") as stranger, pytest.raises(Unauthorized, match="thaw keys create"):
        stranger.datasets()


def test_rate_limits_carry_retry_after(thaw, train):
    spec = {"base_model": "tiny-bert", "data": {"train": train.id}}
    with pytest.raises(RateLimited) as limited:
        for _ in range(10):  # this service allows 5 submissions a minute per key
            thaw.create_job(spec)
    assert limited.value.status_code == 429 and limited.value.retry_after >= 1


def test_no_service_is_service_unavailable():
    with Thaw(f"http://127.0.0.1:{free_port()}", "k", timeout=2) as nobody, pytest.raises(ServiceUnavailable):
        nobody.health()


def test_experiments_are_typed(thaw, train):
    experiment = thaw.create_experiment(
        {"data": {"train": train.id}, "base_model": "tiny-bert", "recipes": ["top_only", "lora"], "seeds": 2}
    )
    assert isinstance(experiment, ExperimentPublic) and len(experiment.runs) == 4
    assert thaw.experiment(experiment.id).leaderboard[0].runs == 2
    assert thaw.cancel_experiment(experiment.id).status == "cancelled"
    finished = thaw.wait_experiment(experiment.id, poll_seconds=0.05)
    assert {run.status for run in finished.runs} == {"cancelled"}
    assert [e.id for e in thaw.experiments().items] == [experiment.id]


def test_url_and_key_come_from_arguments_then_environment_then_the_config_file(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    monkeypatch.setenv("THAW_CONFIG", str(config))
    monkeypatch.delenv("THAW_URL", raising=False)
    monkeypatch.delenv("THAW_API_KEY", raising=False)
    assert Connection.resolve() == Connection("http://127.0.0.1:8000", None)
    write_config(config, "http://saved:1", "saved-key")
    assert config.stat().st_mode & 0o077 == 0  # it holds a key: the owner's only
    assert Connection.resolve() == Connection("http://saved:1", "saved-key")
    monkeypatch.setenv("THAW_URL", "http://env:2/")
    monkeypatch.setenv("THAW_API_KEY", "env-key")
    assert Connection.resolve() == Connection("http://env:2", "env-key")
    assert Connection.resolve("http://given:3", "given-key") == Connection("http://given:3", "given-key")


def test_an_http_client_can_be_passed_in(api_url, client_settings):
    from tests.utils.services import new_key

    with httpx.Client(base_url=api_url, timeout=10) as http:
        thaw = Thaw(api_url, new_key(client_settings, "initech"), http=http)
        assert thaw.datasets().total == 0 and http.headers["Authorization"].startswith("Bearer thaw_")


def test_follow_events_streams_the_jobs_events_then_its_end(thaw, train):
    created = thaw.create_job({"base_model": "tiny-bert", "data": {"train": train.id}})
    thaw.cancel_job(created.id)
    messages = list(thaw.follow_events(created.id))
    kinds = [kind for kind, _ in messages]
    assert kinds == ["queued", "recipe_chosen", "cancelled", "end"], messages
    assert messages[-1][1]["status"] == "cancelled"
    ids = [data["id"] for kind, data in messages if kind != "end"]
    assert [kind for kind, _ in thaw.follow_events(created.id, after=ids[0])] == ["recipe_chosen", "cancelled", "end"]
    with pytest.raises(NotFound):
        list(thaw.follow_events("job_nope"))


def test_the_saved_key_is_sent_only_to_the_saved_service(tmp_path, monkeypatch):
    monkeypatch.setenv("THAW_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("THAW_URL", raising=False)
    monkeypatch.delenv("THAW_API_KEY", raising=False)
    write_config(tmp_path / "config.toml", "http://saved:1", "saved-key")
    assert Connection.resolve("http://saved:1/") == Connection("http://saved:1", "saved-key")
    assert Connection.resolve("http://elsewhere:9") == Connection("http://elsewhere:9", None)
    monkeypatch.setenv("THAW_URL", "http://elsewhere:9")
    assert Connection.resolve().key is None

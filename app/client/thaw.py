"""`Thaw`: the HTTP API as typed Python methods, pydantic models in and out, errors as exceptions."""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx

from app.client.config import Connection
from app.client.errors import JobFailed, ServiceUnavailable, raise_for
from app.client.polling import poll
from app.client.runs import ModelRuns
from app.schemas.resources import (
    BaseModelsPublic,
    DatasetPublic,
    DatasetsPublic,
    ExperimentPublic,
    ExperimentsPublic,
    JobCreated,
    JobEventPublic,
    JobEventsPublic,
    JobPublic,
    JobsPublic,
    ModelPublic,
    ModelsPublic,
    Prediction,
    PredictResponse,
)

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
T = TypeVar("T")


class Thaw(ModelRuns):
    """A client of one Thaw service. `url` and `key` default to THAW_URL / THAW_API_KEY, then the
    config file `thaw` writes (see app/client/config.py). Pass `http` to reuse an httpx.Client."""

    def __init__(
        self, url: str | None = None, key: str | None = None, *, timeout: float = 60.0, http: httpx.Client | None = None
    ) -> None:
        connection = Connection.resolve(url, key)
        self.url, self.key = connection.url, connection.key
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        # A first prediction loads the model (and torch) on the server: seconds, not milliseconds.
        self.http = http or httpx.Client(base_url=self.url, timeout=timeout)
        self.http.headers.update(headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Thaw:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- transport ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ServiceUnavailable(f"no answer from {self.url}: {error}") from error
        raise_for(response)
        return response

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def _post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, json=body).json()

    # ---- service ------------------------------------------------------------------------------

    def health(self) -> dict[str, str]:
        return self._get("/healthz")

    def base_models(self) -> BaseModelsPublic:
        return BaseModelsPublic.model_validate(self._get("/v1/base-models"))

    # ---- datasets -----------------------------------------------------------------------------

    def upload_dataset(
        self,
        file: str | Path | BinaryIO,
        *,
        name: str | None = None,
        text_field: str = "text",
        label_field: str | None = None,
        filename: str | None = None,
    ) -> DatasetPublic:
        """CSV, TSV or JSONL with a header (or keys); without `label_field` it is unlabeled."""
        form = {"text_field": text_field, **({"name": name} if name else {})}
        if label_field:
            form["label_field"] = label_field
        if isinstance(file, str | Path):
            with Path(file).open("rb") as handle:
                return self.upload_dataset(
                    handle, name=name, text_field=text_field, label_field=label_field, filename=Path(file).name
                )
        upload = {"file": (filename or Path(getattr(file, "name", "data.csv")).name, file)}
        return DatasetPublic.model_validate(self._request("POST", "/v1/datasets", data=form, files=upload).json())

    def datasets(self, *, limit: int = 50, offset: int = 0) -> DatasetsPublic:
        return DatasetsPublic.model_validate(self._get("/v1/datasets", limit=limit, offset=offset))

    def dataset(self, dataset_id: str) -> DatasetPublic:
        return DatasetPublic.model_validate(self._get(f"/v1/datasets/{dataset_id}"))

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # ---- jobs ---------------------------------------------------------------------------------

    def create_job(self, spec: dict[str, Any]) -> JobCreated:
        """Submit a job spec (laid over its recipe by the service); see docs/job-spec.md."""
        return JobCreated.model_validate(self._post("/v1/jobs", spec))

    def jobs(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> JobsPublic:
        return JobsPublic.model_validate(self._get("/v1/jobs", status=status, limit=limit, offset=offset))

    def job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._get(f"/v1/jobs/{job_id}"))

    def events(self, job_id: str) -> list[JobEventPublic]:
        return JobEventsPublic.model_validate(self._get(f"/v1/jobs/{job_id}/events")).items

    def follow_events(self, job_id: str, *, after: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's events as they happen (Server-Sent Events), as (kind, data) pairs: every event
        (`after` an event id, when given), `progress` updates, and a last `end` once it finishes."""
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": str(after)} if after is not None else {})}
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=None) as response:
                if not response.is_success:
                    response.read()
                    raise_for(response)
                yield from server_sent_events(response.iter_lines())
        except httpx.TransportError as error:
            raise ServiceUnavailable(f"the event stream from {self.url} broke: {error}") from error

    def cancel_job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._post(f"/v1/jobs/{job_id}/cancel"))

    def pause_job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._post(f"/v1/jobs/{job_id}/pause"))

    def resume_job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._post(f"/v1/jobs/{job_id}/resume"))

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[JobPublic], None] | None = None,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> JobPublic:
        """Until the job finishes; `on_progress(job)` sees every poll. A failed or cancelled job
        raises JobFailed with its error (unless `raise_on_failure=False`); past `timeout`, TimeoutError."""
        ended = lambda j: j.status in FINISHED  # noqa: E731
        job = poll(lambda: self.job(job_id), ended, on_progress, poll_seconds, timeout, f"job {job_id}")
        if raise_on_failure and job.status != "succeeded":
            raise JobFailed(f"job {job_id} {job.status}: {job.error or 'no error recorded'}", job)
        return job

    # ---- models -------------------------------------------------------------------------------

    def models(self, *, limit: int = 50, offset: int = 0) -> ModelsPublic:
        return ModelsPublic.model_validate(self._get("/v1/models", limit=limit, offset=offset))

    def model(self, model_id: str) -> ModelPublic:
        return ModelPublic.model_validate(self._get(f"/v1/models/{model_id}"))

    def delete_model(self, model_id: str) -> None:
        self._request("DELETE", f"/v1/models/{model_id}")

    def export_model(self, model_id: str, directory: str | Path, *, format: str = "hf") -> Path:
        """Download the model's export (`hf` or `onnx`) and unpack it into `directory`; returns the
        folder it made there (`<model_id>-<format>`)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as archive:
            try:
                with self.http.stream("GET", f"/v1/models/{model_id}/export", params={"format": format}) as response:
                    if response.is_error:
                        response.read()
                        raise_for(response)
                    for chunk in response.iter_bytes():
                        archive.write(chunk)
            except httpx.TransportError as error:
                raise ServiceUnavailable(f"no answer from {self.url}: {error}") from error
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                tar.extractall(target, filter="data")  # no absolute paths, links out or devices
                (top,) = {Path(name).parts[0] for name in tar.getnames()}
        return target / top

    def predict(
        self,
        model_id: str,
        inputs: list[str] | list[tuple[str, str]] | str,
        abstain_below: float | None = None,
    ) -> list[Prediction]:
        """Labels and probabilities, one per input, in order; a single string is one input. Under
        `abstain_below` (or the model's own threshold) a prediction's label is None."""
        texts = [inputs] if isinstance(inputs, str) else [list(x) if isinstance(x, tuple) else x for x in inputs]
        body: dict[str, Any] = {"inputs": texts}
        if abstain_below is not None:
            body["abstain_below"] = abstain_below
        return PredictResponse.model_validate(self._post(f"/v1/models/{model_id}/predict", body)).predictions

    # ---- experiments --------------------------------------------------------------------------

    def create_experiment(self, experiment: dict[str, Any]) -> ExperimentPublic:
        """`{"data": {...}, "recipes": [...] and/or "specs": [...], "seeds": n}`: see docs/experiments.md."""
        return ExperimentPublic.model_validate(self._post("/v1/experiments", experiment))

    def experiments(self, *, limit: int = 50, offset: int = 0) -> ExperimentsPublic:
        return ExperimentsPublic.model_validate(self._get("/v1/experiments", limit=limit, offset=offset))

    def experiment(self, experiment_id: str) -> ExperimentPublic:
        return ExperimentPublic.model_validate(self._get(f"/v1/experiments/{experiment_id}"))

    def cancel_experiment(self, experiment_id: str) -> ExperimentPublic:
        return ExperimentPublic.model_validate(self._post(f"/v1/experiments/{experiment_id}/cancel"))

    def wait_experiment(
        self,
        experiment_id: str,
        *,
        on_progress: Callable[[ExperimentPublic], None] | None = None,
        poll_seconds: float = 2.0,
        timeout: float | None = None,
    ) -> ExperimentPublic:
        """Until every run has finished; returns the experiment with its final leaderboard."""
        return poll(
            lambda: self.experiment(experiment_id),
            lambda e: e.status != "running",
            on_progress,
            poll_seconds,
            timeout,
            f"experiment {experiment_id}",
        )


def server_sent_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream: `event:` and `data:` lines up to a blank line make one message;
    comment lines (keep-alives) are skipped."""
    kind, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)

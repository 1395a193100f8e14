"""The client's methods for checkpoints and model runs (evaluations, batch predictions), mixed into
`Thaw` (app/client/thaw.py), whose transport they use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.client.errors import JobFailed, ServiceUnavailable, raise_for
from app.client.polling import poll
from app.schemas.model_runs import ModelRunPublic, ModelRunsPublic
from app.schemas.resources import CheckpointPublic, CheckpointsPublic

RUN_FINISHED = frozenset({"succeeded", "failed"})
PATHS = {"evaluation": "/v1/evaluations", "prediction": "/v1/predictions"}


class ModelRuns:
    url: str
    http: httpx.Client
    _get: Callable[..., Any]
    _post: Callable[..., Any]
    _request: Callable[..., httpx.Response]

    def checkpoints(self, job_id: str) -> list[CheckpointPublic]:
        """One per epoch's validation, oldest first; `best` marks the one each run kept."""
        return CheckpointsPublic.model_validate(self._get(f"/v1/jobs/{job_id}/checkpoints")).items

    # ---- evaluations -----------------------------------------------------------------------------

    def evaluate(self, model_id: str, dataset_id: str, **columns: str | list[str]) -> ModelRunPublic:
        """Queue an evaluation on a labeled dataset (`text_field`, `text_fields`, `label_field`:
        columns other than the model's job read); `wait_run` for its report."""
        body = {"dataset": dataset_id, **columns}
        return ModelRunPublic.model_validate(self._post(f"/v1/models/{model_id}/evaluations", body))

    def evaluation(self, evaluation_id: str) -> ModelRunPublic:
        return ModelRunPublic.model_validate(self._get(f"/v1/evaluations/{evaluation_id}"))

    def evaluations(self, model_id: str, *, limit: int = 50, offset: int = 0) -> ModelRunsPublic:
        path = f"/v1/models/{model_id}/evaluations"
        return ModelRunsPublic.model_validate(self._get(path, limit=limit, offset=offset))

    # ---- batch predictions -----------------------------------------------------------------------

    def create_prediction(self, model_id: str, dataset_id: str, **columns: str | list[str]) -> ModelRunPublic:
        """Queue a batch prediction of every row of a stored dataset."""
        body = {"model": model_id, "dataset": dataset_id, **columns}
        return ModelRunPublic.model_validate(self._post("/v1/predictions", body))

    def prediction(self, prediction_id: str) -> ModelRunPublic:
        return ModelRunPublic.model_validate(self._get(f"/v1/predictions/{prediction_id}"))

    def predictions(self, *, limit: int = 50, offset: int = 0) -> ModelRunsPublic:
        return ModelRunsPublic.model_validate(self._get("/v1/predictions", limit=limit, offset=offset))

    def delete_prediction(self, prediction_id: str) -> None:
        self._request("DELETE", f"/v1/predictions/{prediction_id}")

    def download_predictions(self, prediction_id: str, path: str | Path, *, format: str = "jsonl") -> Path:
        """Write a finished batch prediction's output (`jsonl` or `csv`) to `path`."""
        target = Path(path)
        try:
            with self.http.stream(
                "GET", f"/v1/predictions/{prediction_id}/output", params={"format": format}
            ) as answer:
                if answer.is_error:
                    answer.read()
                    raise_for(answer)
                with target.open("wb") as out:
                    for chunk in answer.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as error:
            raise ServiceUnavailable(f"no answer from {self.url}: {error}") from error
        return target

    # ---- either ----------------------------------------------------------------------------------

    def wait_run(
        self,
        run: ModelRunPublic,
        *,
        on_progress: Callable[[ModelRunPublic], None] | None = None,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> ModelRunPublic:
        """Until the evaluation or prediction finishes; a failed one raises JobFailed with its error."""
        path = f"{PATHS[run.kind]}/{run.id}"
        fetch = lambda: ModelRunPublic.model_validate(self._get(path))  # noqa: E731
        ended = poll(
            fetch, lambda r: r.status in RUN_FINISHED, on_progress, poll_seconds, timeout, f"{run.kind} {run.id}"
        )
        if raise_on_failure and ended.status != "succeeded":
            raise JobFailed(f"{run.kind} {run.id} failed: {ended.error or 'no error recorded'}", ended)
        return ended

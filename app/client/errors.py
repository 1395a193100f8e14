"""What the client raises: one exception per kind of answer, each carrying the API's own message."""

from __future__ import annotations

from typing import Any

import httpx


class ThawError(Exception):
    """The API refused or failed a request; `message` is its `detail`, `status_code` its status."""

    def __init__(self, message: str, status_code: int | None = None, response: httpx.Response | None = None) -> None:
        super().__init__(message if status_code is None else f"{status_code}: {message}")
        self.message, self.status_code, self.response = message, status_code, response


class Unauthorized(ThawError):
    """401: no key, or a revoked one."""


class NotFound(ThawError):
    """404: no such resource for this tenant."""


class Conflict(ThawError):
    """409: the resource is in a state that forbids it (a finished job, a dataset a job reads)."""


class InvalidRequest(ThawError):
    """400 or 422: the request itself is wrong; the message names the field."""


class TooLarge(ThawError):
    """413: an upload over the service's limit."""


class RateLimited(ThawError):
    """429: try again after `retry_after` seconds."""

    def __init__(self, message: str, status_code: int, response: httpx.Response, retry_after: float | None) -> None:
        super().__init__(message, status_code, response)
        self.retry_after = retry_after


class ServiceUnavailable(ThawError):
    """503 (the database or queue is down) or no answer at all."""


class ServerError(ThawError):
    """Another 5xx: the service's fault."""


class JobFailed(ThawError):
    """`wait()` saw the job end failed or cancelled; `job` is its last state."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message)
        self.job = job


BY_STATUS: dict[int, type[ThawError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: InvalidRequest,
    503: ServiceUnavailable,
}


def detail_of(response: httpx.Response) -> str:
    """The API's `detail`: a string from Thaw's own errors, a list from FastAPI's request validation."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip() or response.reason_phrase
    if isinstance(detail, list):  # [{"loc": [...], "msg": ...}]
        return "; ".join(f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}" for item in detail)
    return str(detail)


def raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    message, status = detail_of(response), response.status_code
    if status == 429:
        retry = response.headers.get("Retry-After")
        raise RateLimited(message, status, response, float(retry) if retry else None)
    kind = BY_STATUS.get(status, ServerError if status >= 500 else ThawError)
    raise kind(message, status, response)

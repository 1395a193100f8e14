"""Logs: one JSON object per line (or plain lines for people), each carrying the request or job it
belongs to.

The ids live in context variables: the API's request middleware sets `request_id`, a worker sets
`job_id` while it runs a job (`job_context`), and every line logged meanwhile carries them. Starlette
copies the context into its threadpool, so sync routes and dependencies carry the request id too;
a thread started with `threading.Thread` does not (it starts with an empty context).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from app.config import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is written out,
# except uvicorn's ANSI-coloured copy of its message.
_RECORD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


@contextmanager
def job_context(job: str) -> Iterator[None]:
    """Every line logged inside carries `job_id`."""
    token = job_id.set(job)
    try:
        yield
    finally:
        job_id.reset(token)


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's request and job ids (an `extra=` value wins over the context) and its other extras."""
    fields: dict[str, Any] = {"request_id": request_id.get(), "job_id": job_id.get()}
    fields.update((k, v) for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES)
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message", "request_id"?, "job_id"?, extras..., "exception"?}"""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in context_of(record).items():
            line.setdefault(name, value)  # an extra may not pass for one of the fields above
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2024-05-01 12:00:00,123 INFO app.api.access: GET /healthz 200 [request_id=... duration_ms=0.9]`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        fields = context_of(record)
        suffix = " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" if fields else ""
        return super().formatMessage(record) + suffix


class _ThawHandler(logging.StreamHandler):
    """The handler `configure_logging` installs; found again by its type, so configuring twice
    replaces it instead of writing every line twice."""


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """Root logger to `stream` (stderr) in `settings.log_format`, at `settings.log_level`. Handlers
    that others installed (a test runner's) stay; uvicorn's loggers write through the root logger too,
    except its access log: the API's request middleware writes the access lines
    (app/api/request_context.py)."""
    handler = _ThawHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ThawHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    _route_uvicorn_logs()


def _route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False  # no handler at all: uvicorn then skips building its access lines

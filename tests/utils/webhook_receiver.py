"""A real webhook receiver for tests: an HTTP server on a loopback port that records every POST."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    at: float  # time.monotonic() when it arrived
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signature(self) -> tuple[int, str]:
        """(t, v1) of the Thaw-Signature header."""
        parts = dict(item.split("=", 1) for item in self.headers["thaw-signature"].split(","))
        return int(parts["t"]), parts["v1"]

    def signed_by(self, secret: str) -> bool:
        """Checked independently of the service's own verify(): HMAC-SHA256 over `<t>.<raw body>`."""
        timestamp, digest = self.signature()
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, digest)


class Receiver:
    """Answers the first requests with `answers` (status codes; 3xx with a Location header), then 200.
    A context manager: serving inside the block."""

    def __init__(self, answers: list[int] | None = None, always: int | None = None) -> None:
        self.answers, self.always = list(answers or []), always
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    def url(self, path: str = "/hooks/thaw") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, received: Received) -> int:
        with self._lock:
            self.requests.append(received)
            if self.always is not None:
                return self.always
            return self.answers.pop(0) if self.answers else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._answer(Received(time.monotonic(), self.path, headers, body))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.url("/elsewhere"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        return Handler

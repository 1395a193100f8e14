"""Polling a resource until it finishes, for the client's `wait` methods."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    fetch: Callable[[], T],
    finished: Callable[[T], bool],
    on_progress: Callable[[T], None] | None,
    poll_seconds: float,
    timeout: float | None,
    what: str,
) -> T:
    """`fetch()` until `finished` says so, showing each state to `on_progress`; TimeoutError past `timeout`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = fetch()
        if on_progress is not None:
            on_progress(state)
        if finished(state):
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} is still {getattr(state, 'status', 'unfinished')} after {timeout} s")
        time.sleep(poll_seconds)

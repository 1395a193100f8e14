"""The API told to stop (SIGTERM, Ctrl-C): uvicorn stops accepting connections and waits for the
responses in flight (`--timeout-graceful-shutdown`), but a job's event stream only ends with its job.
So the signal also sets `stopping`, and a stream ends at its next poll; its client reconnects with
`Last-Event-ID` (to another replica, or to this one restarted) and misses nothing (app/api/sse.py)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def note_stop_signals(stopping: threading.Event) -> Callable[[], None]:
    """Set `stopping` on SIGINT or SIGTERM, then pass the signal on to the server's own handler;
    returns what puts that handler back. Outside the main thread (a test's in-process client, which
    no signal reaches) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {number: signal.getsignal(number) for number in SIGNALS}

    def on_signal(number: int, frame: FrameType | None) -> None:
        stopping.set()
        handler = previous[number]
        if callable(handler):
            handler(number, frame)
        elif handler == signal.SIG_DFL:  # nobody else listens: stop as the default would
            signal.signal(number, signal.SIG_DFL)
            signal.raise_signal(number)

    for number in SIGNALS:
        signal.signal(number, on_signal)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore

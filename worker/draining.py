"""A worker told to stop (SIGTERM: what `docker stop`, systemd, Kubernetes and `thaw run` send)
gives its job back instead of holding it to the end.

Celery's answer to SIGTERM is a warm shutdown: it takes no new message and waits for the running
task, however long it trains, while the supervisor's grace period runs out and it is killed. Here a
pool process notes SIGTERM instead of dying of it, whether the worker's main process passed it on
(`docker stop` signals the main process alone) or it came to the whole process group (systemd);
the job it trains checkpoints at its next progress report (about a second:
`progress_interval_seconds`) and is queued again (worker/runner.py), a model run between two chunks
(worker/model_runs.py). The task returns, and the warm shutdown ends at once.

In a cold shutdown (SIGQUIT, a second Ctrl-C) Celery ends its pool processes with SIGTERM: the main
process says so first, through memory the pool processes share with it, and they die of it then.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from types import FrameType

from billiard.process import active_children

log = logging.getLogger(__name__)

_requested = threading.Event()
# Made in the main process when the worker starts, before its pool processes fork: shared with them.
_cold_shutdown = multiprocessing.RawValue("b", 0)


def draining() -> bool:
    """This process was asked to stop: give back what it holds at the next safe point."""
    return _requested.is_set()


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    if _cold_shutdown.value:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _requested.set()


def listen() -> None:
    """In a pool process, as a task starts: billiard sets its own SIGTERM handler once the process has
    forked, which would end it mid-step."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def on_shutdown(how: str) -> None:
    """In the worker's main process, as its shutdown (`how`: Warm, Cold) begins."""
    if how != "Warm":
        _cold_shutdown.value = 1  # the SIGTERM that Celery is about to send its pool processes ends them
        return
    for child in active_children():
        if child.pid is not None:
            log.info("asking pool process %d to give back its job", child.pid)
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

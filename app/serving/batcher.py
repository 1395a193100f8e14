"""The micro-batcher: concurrent predict requests become a few large forward passes.

Requests queue here without blocking the caller's event loop (`submit` returns a future). One
inference thread takes the oldest request's deployment and every request queued for it, up to
`max_batch` texts, and runs them as one length-sorted batch. When the last batch held several
requests (concurrent callers), it first waits up to `max_wait` for as many to gather; a lone caller
never waits, so batching costs nothing at low load. Each model may have at most `queue_limit` texts
waiting: past that, `submit` refuses at once (the API answers 429) rather than letting memory grow.
After each forward pass, `on_batch(texts, requests)` hears its size (the API's metrics).

Every torch call of the serving process runs on this one thread, model loading included (`call`):
each thread that calls into torch gets an OpenMP thread pool of its own, and with two pools on a
2-core machine libgomp throttles its spin-waiting, which doubled the time of a MiniLM forward pass
here (4.6 ms from one thread, 10.3 ms from a second one).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.serving.errors import Overloaded

if TYPE_CHECKING:
    from app.adaptation.data import Text
    from app.serving.cache import Served

log = logging.getLogger(__name__)

BatchObserver = Callable[[int, int], None]  # (texts, requests) of a forward pass that ran


@dataclass
class Pending:
    served: Served
    texts: Sequence[Text]
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(
        self, max_wait_seconds: float, max_batch: int, queue_limit: int, on_batch: BatchObserver | None = None
    ) -> None:
        self.max_wait, self.max_batch, self.queue_limit = max_wait_seconds, max_batch, queue_limit
        self.on_batch = on_batch
        self._pending: deque[Pending] = deque()
        self._calls: deque[tuple[Callable[[], Any], Future]] = deque()  # run before the next batch
        self._queued: Counter[str] = Counter()  # texts waiting, per model
        self._changed = threading.Condition()
        self._last_batch_requests = 1
        self._closed = False
        self.batches = 0  # batches run
        self.requests = 0  # requests taken into batches
        self._thread = threading.Thread(target=self._serve, name="thaw-batcher", daemon=True)
        self._thread.start()

    def submit(self, served: Served, texts: Sequence[Text]) -> Future:
        """A future of the predictions; raises Overloaded at once when the model's queue is full."""
        pending = Pending(served, texts)
        with self._changed:
            queued = self._queued[served.key]
            if queued and queued + len(texts) > self.queue_limit:
                raise Overloaded(served.key, queued, self.queue_limit)
            self._queued[served.key] += len(texts)
            self._pending.append(pending)
            self._changed.notify()
        return pending.future

    def call(self, function: Callable[[], Any]) -> Future:
        """Run `function` on the inference thread, between batches (loading a model, settings)."""
        future: Future = Future()
        with self._changed:
            self._calls.append((function, future))
            self._changed.notify()
        return future

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout=5)

    # ---- the inference thread ------------------------------------------------------------------

    def _serve(self) -> None:
        name_os_thread("thaw-batcher")
        while True:
            work = self._next_work()
            if work is None:
                return
            if isinstance(work, list):
                self._run(work)
                continue
            function, future = work
            try:
                future.set_result(function())
            except Exception as error:
                future.set_exception(error)

    def _next_work(self) -> list[Pending] | tuple[Callable[[], Any], Future] | None:
        with self._changed:
            while not self._pending and not self._calls and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            if self._calls:
                return self._calls.popleft()
            oldest = self._pending[0]
            deadline = oldest.arrived + self.max_wait
            same = self._same_deployment(oldest)
            while (
                self._last_batch_requests > 1
                and len(same) < self._last_batch_requests
                and self._texts(same) < self.max_batch
                and (left := deadline - time.monotonic()) > 0
            ):
                self._changed.wait(left)
                same = self._same_deployment(oldest)
            batch, texts = [], 0
            for pending in same:
                if batch and texts + len(pending.texts) > self.max_batch:
                    break
                batch.append(pending)
                texts += len(pending.texts)
            taken = {id(pending) for pending in batch}
            self._pending = deque(p for p in self._pending if id(p) not in taken)
            for pending in batch:
                self._queued[pending.served.key] -= len(pending.texts)
                if not self._queued[pending.served.key]:
                    del self._queued[pending.served.key]
            self._last_batch_requests = len(batch)
            self.requests += len(batch)
            return batch

    def _same_deployment(self, oldest: Pending) -> list[Pending]:
        return [p for p in self._pending if p.served.deployment is oldest.served.deployment]

    @staticmethod
    def _texts(pendings: list[Pending]) -> int:
        return sum(len(p.texts) for p in pendings)

    def _run(self, batch: list[Pending]) -> None:
        deployment = batch[0].served.deployment
        try:
            predictions = deployment.predict([(p.served.key, p.texts) for p in batch], self.max_batch)
        except Exception as error:  # every waiting caller hears why
            for pending in batch:
                pending.future.set_exception(error)
            return
        self.batches += 1
        self._report(self._texts(batch), len(batch))  # first: a caller that has its answer sees it counted
        for pending, result in zip(batch, predictions, strict=True):
            pending.future.set_result(result)

    def _report(self, texts: int, requests: int) -> None:
        if self.on_batch is None:
            return
        try:
            self.on_batch(texts, requests)
        except Exception:  # an observer's fault must not stop the inference thread
            log.exception("the batch observer failed")


def name_os_thread(name: str) -> None:
    """Give the calling thread its name in the OS too (top, py-spy, /proc/<pid>/task/*/comm), so that
    the forward passes' CPU time can be told apart; best effort, Linux only."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass

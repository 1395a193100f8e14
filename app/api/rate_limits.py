"""Per-key rate limits (token buckets, one per API key and kind of request, in this replica).

A key may spend `per_minute` requests of a kind, in bursts of up to that many; the bucket refills
continuously. Past that, the request is refused with 429 and a Retry-After that says when the next
one will be allowed. Only authenticated requests reach a bucket, so their number is bounded by the
number of live keys.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from app.api.deps import TenantDep, bearer_key
from app.services.errors import RateLimited
from app.services.keys import hash_key


class TokenBuckets:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.rate, self.clock = float(per_minute), per_minute / 60.0, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def build_rate_limits(predict_per_minute: int, jobs_per_minute: int) -> dict[str, TokenBuckets | None]:
    return {
        "predict": TokenBuckets(predict_per_minute) if predict_per_minute > 0 else None,
        "jobs": TokenBuckets(jobs_per_minute) if jobs_per_minute > 0 else None,
    }


def spend(request: Request, kind: str, key: str) -> None:
    """Spend one of the key's `kind` tokens, or refuse with 429 and when to retry."""
    buckets = request.app.state.rate_limits.get(kind)
    if buckets is None:
        return
    wait = buckets.take(hash_key(key))
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(f"too many {kind} requests for this API key; retry in {seconds}s", seconds)


def rate_limited(kind: str) -> Callable[..., Awaitable[None]]:
    """A route dependency: authenticate (401 first), then spend one of the key's `kind` tokens."""

    async def spend_token(
        request: Request, _tenant: TenantDep, authorization: Annotated[str | None, Header()] = None
    ) -> None:
        spend(request, kind, bearer_key(authorization) or "")

    return spend_token


JobsLimit = Depends(rate_limited("jobs"))

"""The webhook signature (as Stripe's): `Thaw-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>`. A receiver recomputes the HMAC over the raw bytes it received, compares in
constant time, and rejects a timestamp more than 5 minutes from its clock (a replayed request);
`verify` does all that, and is the reference implementation a receiver can copy."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Thaw-Signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes | str, tolerance: float = TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """Whether `header` (a Thaw-Signature value) signs `body`, the raw request body, under `secret`,
    with a timestamp within `tolerance` seconds of `now` (default: this machine's clock)."""
    raw = body.encode() if isinstance(body, str) else body
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, raw).encode()
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (a forged header's).
    return any(hmac.compare_digest(expected, candidate.encode()) for candidate in parts.get("v1", []))


# ---- what is sent ---------------------------------------------------------------------------------

"""Serving's refusals, importable without torch (the API loads torch on its first prediction)."""

from __future__ import annotations


class Overloaded(Exception):
    """A model's queue is full."""

    def __init__(self, model_key: str, queued: int, limit: int) -> None:
        super().__init__(f"model {model_key!r} has {queued} texts waiting (limit {limit}); retry shortly")


class Unloaded(LookupError):
    """The model was evicted between its request's arrival and its batch."""

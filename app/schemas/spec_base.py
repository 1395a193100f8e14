"""Building blocks of the job spec's models, shared by spec.py and signal.py."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Named(Strict):
    """A unit with options, written either as {"name": ..., options} or as its bare name."""


def _bare_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


ByName = BeforeValidator(_bare_name)

"""Texts of at most this many tokens (the base model's tokens, [CLS] and [SEP] included)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from app.adaptation.slicing import RULES, Examples


@RULES.register("max_tokens")
def max_tokens(limit: Annotated[int, Field(ge=1)], data: Examples) -> list[bool]:
    return [count <= limit for count in data.token_counts]

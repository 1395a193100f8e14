"""Long texts: at least this many tokens (the base model's tokens, [CLS] and [SEP] included)."""

from __future__ import annotations

from app.adaptation.slicing import RULES, Examples


@RULES.register("min_tokens")
def min_tokens(limit: int, data: Examples) -> list[bool]:
    return [count >= limit for count in data.token_counts]

"""Short texts: at most this many tokens (the base model's tokens, [CLS] and [SEP] included)."""

from __future__ import annotations

from app.adaptation.slicing import RULES, Examples


@RULES.register("max_tokens")
def max_tokens(limit: int, data: Examples) -> list[bool]:
    return [count <= limit for count in data.token_counts]

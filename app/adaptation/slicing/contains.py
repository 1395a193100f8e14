"""Texts that contain any of the words, as whole words, case-insensitively."""

from __future__ import annotations

import re

from app.adaptation.slicing import RULES, Examples, plain_text


@RULES.register("contains")
def contains(words: list[str], data: Examples) -> list[bool]:
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return [pattern.search(plain_text(text)) is not None for text in data.texts]

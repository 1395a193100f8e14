"""Texts containing any of these words (case-insensitive, whole words)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from app.adaptation.slicing import RULES, Examples, plain_text

Words = Annotated[list[str], Field(min_length=1)]


@RULES.register("contains")
def contains(words: Words, data: Examples) -> list[bool]:
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return [pattern.search(plain_text(text)) is not None for text in data.texts]

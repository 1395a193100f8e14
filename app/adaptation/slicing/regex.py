"""Texts where a regular expression is found (re.search)."""

from __future__ import annotations

import re

from app.adaptation.slicing import RULES, Examples, plain_text


@RULES.register("regex")
def regex(pattern: str, data: Examples) -> list[bool]:
    compiled = re.compile(pattern)
    return [compiled.search(plain_text(text)) is not None for text in data.texts]

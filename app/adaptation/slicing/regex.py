"""Texts where this regular expression is found (re.search)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from app.adaptation.slicing import RULES, Examples, plain_text


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"regex does not compile: {error}") from None
    return pattern


Pattern = Annotated[str, Field(min_length=1), AfterValidator(_compiles)]


@RULES.register("regex")
def regex(pattern: Pattern, data: Examples) -> list[bool]:
    compiled = re.compile(pattern)
    return [compiled.search(plain_text(text)) is not None for text in data.texts]

"""Examples whose label is one of these (multi_label: any of its labels; unlabeled data: none)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from app.adaptation.slicing import RULES, Examples


@RULES.register("label_in")
def label_in(labels: Annotated[list[str], Field(min_length=1)], data: Examples) -> list[bool]:
    if data.labels is None:
        return [False] * len(data.texts)
    wanted = set(labels)
    return [bool(wanted & ({gold} if isinstance(gold, str) else set(gold))) for gold in data.labels]

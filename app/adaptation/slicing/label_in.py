"""Examples whose label (multi_label: any of its labels) is one of these; unlabeled data: none."""

from __future__ import annotations

from app.adaptation.slicing import RULES, Examples


@RULES.register("label_in")
def label_in(labels: list[str], data: Examples) -> list[bool]:
    if data.labels is None:
        return [False] * len(data.texts)
    wanted = set(labels)
    return [bool(wanted & ({gold} if isinstance(gold, str) else set(gold))) for gold in data.labels]

"""Slice rules (`slices[].<rule>`): each decides, for every example, whether it is in the slice.

A rule is a function `rule(value, examples) -> [bool]`; the type of its first parameter is the type
of the value a slice writes for it (`{"name": "short", "max_tokens": 8}`), and its module's
docstring describes it. The job spec's SliceSpec has one field per registered rule, built from
these (`rule_fields`), so a new rule is one module. The spec reads them, so these modules load
without torch (registry.py).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.adaptation.registry import Registry, unit_modules

if TYPE_CHECKING:
    from app.adaptation.data import Label, Text
    from app.schemas.signal import SliceSpec


@dataclass(frozen=True)
class Examples:
    texts: Sequence[Text]
    labels: Sequence[Label] | None  # None where labels are unknown (a rule on labels selects nothing)
    token_counts: Sequence[int]  # real tokens, [CLS] and [SEP] included, after truncation


Rule = Callable[[Any, Examples], list[bool]]
RULES: Registry[Rule] = Registry("slice rule", __name__)


def rule_fields() -> dict[str, tuple[Any, str]]:
    """Rule name -> (the type of its value, its description), for the spec's SliceSpec."""
    docs = unit_modules(__name__)
    fields = {}
    for name in RULES.names():
        rule = RULES.get(name)
        first = next(iter(inspect.signature(rule).parameters))
        fields[name] = (typing.get_type_hints(rule, include_extras=True)[first], docs[name])
    return fields


def members(slice_spec: SliceSpec, data: Examples) -> list[bool]:
    rule = slice_spec.rule
    return RULES.get(rule)(getattr(slice_spec, rule), data)


def plain_text(text: Text) -> str:
    return text if isinstance(text, str) else " ".join(text)

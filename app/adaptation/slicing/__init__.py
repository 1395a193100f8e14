"""Slice rules (`slices[].<rule>`): each decides, for every example, whether it is in the slice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from app.adaptation.data import Label, Text, encode
from app.adaptation.registry import Registry, discover
from app.schemas.signal import SliceSpec


@dataclass(frozen=True)
class Examples:
    texts: Sequence[Text]
    labels: Sequence[Label] | None  # None where labels are unknown (a rule on labels selects nothing)
    token_counts: Sequence[int]  # real tokens, [CLS] and [SEP] included, after truncation


Rule = Callable[[Any, Examples], list[bool]]
RULES: Registry[Rule] = Registry("slice rule")


def examples(tokenizer: PreTrainedTokenizerBase, texts: Sequence[Text], labels, max_length: int) -> Examples:
    return Examples(texts, labels, [len(ids) for ids in encode(tokenizer, texts, max_length)])


def members(slice_spec: SliceSpec, data: Examples) -> list[bool]:
    rule = slice_spec.rule
    return RULES.get(rule)(getattr(slice_spec, rule), data)


def plain_text(text: Text) -> str:
    return text if isinstance(text, str) else " ".join(text)


discover(__name__)

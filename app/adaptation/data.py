"""Task data, the stratified hold-out split, tokenisation and length-grouped dynamic-padding batches."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

Text = str | tuple[str, str]  # one text, or a sentence pair
Label = str | tuple[str, ...]  # one label (single_label), or the labels of a text (multi_label)
MAIN_TASK = "main"  # what the main task's batches count as, beside the auxiliary tasks' (Batch.task)


@dataclass(frozen=True)
class LabeledTexts:
    texts: list[Text]
    labels: list[Label]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError("texts and labels differ in length")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabeledTexts:
        return LabeledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices])


@dataclass(frozen=True)
class TaskData:
    train: LabeledTexts
    validation: LabeledTexts | None = None
    test: LabeledTexts | None = None


def stratified_split(data: LabeledTexts, fraction: float, seed: int) -> tuple[LabeledTexts, LabeledTexts]:
    """Hold out `fraction` of every class (at least one example of each class that has two)."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(data.labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    held: list[int] = []
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        take = min(len(indices) - 1, max(1, round(len(indices) * fraction)))
        held.extend(indices[:take])
    held_set = set(held)
    kept = [i for i in range(len(data)) if i not in held_set]
    return data.subset(kept), data.subset(sorted(held))


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[Text], max_length: int) -> list[list[int]]:
    """Token ids per text (a pair as the base model's pair input), cut to max_length; padding
    happens per batch."""
    if texts and isinstance(texts[0], tuple):
        first, second = zip(*texts, strict=True)
        return tokenizer(list(first), list(second), truncation=True, max_length=max_length)["input_ids"]
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


@dataclass(frozen=True)
class Batch:
    indices: list[int]
    input_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None
    labels: torch.Tensor | None
    features: torch.Tensor | None = None  # cached pooling input, when the encoder is frozen
    token_type_ids: torch.Tensor | None = None  # segment ids of sentence pairs
    task: str | None = None  # an auxiliary task's batch (multi-task training); None: the main task's


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, attention mask) of token-id rows padded to the longest of them."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, : len(row)] = 1
    return input_ids, mask


class FixedBatches:
    """Batches of `batch_size` items: shuffled for training, in order for evaluation. A subclass says
    how many items it has (`count`) and makes a batch of some of them (`batch`)."""

    batch_size: int

    @property
    def count(self) -> int:
        raise NotImplementedError

    def batch(self, indices: list[int]) -> Batch:
        raise NotImplementedError

    def __len__(self) -> int:
        return (self.count + self.batch_size - 1) // self.batch_size

    def training_order(self, rng: random.Random) -> Iterator[Batch]:
        order = list(range(self.count))
        rng.shuffle(order)
        return (self.batch(order[i : i + self.batch_size]) for i in range(0, len(order), self.batch_size))

    def by_length(self) -> Iterator[Batch]:
        order = list(range(self.count))
        return (self.batch(order[i : i + self.batch_size]) for i in range(0, len(order), self.batch_size))


class Batches:
    """Batches padded only to their own longest text.

    Training order is shuffled, then sorted by length inside windows of 50 batches, so a batch
    holds texts of similar length (little padding) while the epoch stays random.
    """

    window = 50

    def __init__(
        self,
        ids: list[list[int]],
        labels: list[Any] | None,
        batch_size: int,
        pad_id: int,
        type_ids: list[list[int]] | None = None,
    ):
        self.ids, self.labels, self.batch_size, self.pad_id = ids, labels, batch_size, pad_id
        self.type_ids = type_ids

    def __len__(self) -> int:
        return (len(self.ids) + self.batch_size - 1) // self.batch_size

    def training_order(self, rng: random.Random) -> Iterator[Batch]:
        order = list(range(len(self.ids)))
        rng.shuffle(order)
        span = self.batch_size * self.window
        groups: list[list[int]] = []
        for start in range(0, len(order), span):
            window = sorted(order[start : start + span], key=lambda i: len(self.ids[i]))
            groups.extend(window[j : j + self.batch_size] for j in range(0, len(window), self.batch_size))
        rng.shuffle(groups)
        return (self.collate(group) for group in groups)

    def by_length(self) -> Iterator[Batch]:
        """Evaluation order: longest first, so memory peaks at once and the rest pads little."""
        order = sorted(range(len(self.ids)), key=lambda i: -len(self.ids[i]))
        for start in range(0, len(order), self.batch_size):
            yield self.collate(order[start : start + self.batch_size])

    def collate(self, indices: list[int]) -> Batch:
        input_ids, mask = pad_rows([self.ids[i] for i in indices], self.pad_id)
        width = input_ids.shape[1]
        labels = None
        if self.labels is not None:
            labels = torch.tensor([self.labels[i] for i in indices])  # class ids, or multi-hot rows
        types = None
        if self.type_ids is not None:
            types = torch.zeros((len(indices), width), dtype=torch.long)
            for row, i in enumerate(indices):
                types[row, : len(self.type_ids[i])] = torch.tensor(self.type_ids[i], dtype=torch.long)
        return Batch(indices, input_ids, mask, labels, token_type_ids=types)


def token_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Text],
    max_length: int,
    labels: list[Any] | None,
    batch_size: int,
) -> Batches:
    """Tokenised texts in batches; sentence pairs become the base model's pair input, with segment ids."""
    if texts and isinstance(texts[0], tuple):
        first, second = zip(*texts, strict=True)
        encoded = tokenizer(list(first), list(second), truncation=True, max_length=max_length)
        types = encoded.get("token_type_ids")
        return Batches(encoded["input_ids"], labels, batch_size, tokenizer.pad_token_id, types)
    return Batches(encode(tokenizer, texts, max_length), labels, batch_size, tokenizer.pad_token_id)


class StepBatches:
    """Batches of an extra data source (unlabeled text) drawn by step number: step s gets the same
    batch in an unbroken run and in one resumed at s, without any state to checkpoint. Each pass
    over the data is a fresh shuffle, seeded by the pass's number."""

    def __init__(self, batches: Batches, seed: int) -> None:
        self.batches, self.seed = batches, seed
        self.examples = len(batches.ids)

    def at(self, step: int) -> Batch:
        size = min(self.batches.batch_size, self.examples)
        per_pass = self.examples // size  # whole batches per pass; the remainder waits for the next shuffle
        cycle, index = divmod(step, per_pass)
        order = list(range(self.examples))
        random.Random(self.seed * 1_000_003 + cycle).shuffle(order)
        return self.batches.collate(order[index * size : (index + 1) * size])

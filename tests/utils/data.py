"""Small synthetic text classification tasks a tiny model can learn in seconds."""

from __future__ import annotations

import csv
import io
import random

from app.adaptation import LabeledTexts

WORDS = {
    "positive": ["great", "wonderful", "good", "lovely", "excellent"],
    "negative": ["awful", "terrible", "bad", "horrid", "dreadful"],
}
FILLER = ["the", "movie", "plot", "was", "really", "quite", "and", "long", "short", "acting"]


def sentiment(n: int, seed: int = 0) -> LabeledTexts:
    """Each text holds one cue word of its class among filler words: separable, not trivial."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(sorted(WORDS))
        words = rng.sample(FILLER, rng.randint(2, 8)) + [rng.choice(WORDS[label])]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return LabeledTexts(texts, labels)


def as_csv(data: LabeledTexts) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(zip(data.texts, data.labels, strict=True))
    return out.getvalue().encode()


def tagged(n: int, seed: int = 0) -> LabeledTexts:
    """Multi-label: a text carries tag `funny` if it has a funny word, `sad` if a sad word (either,
    both or... at least one)."""
    rng = random.Random(seed)
    cues = {"funny": ["hilarious", "witty", "comic"], "sad": ["tragic", "gloomy", "tearful"]}
    texts, labels = [], []
    for _ in range(n):
        tags = rng.choice([("funny",), ("sad",), ("funny", "sad")])
        words = rng.sample(FILLER, rng.randint(2, 6)) + [rng.choice(cues[t]) for t in tags]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(tags)
    return LabeledTexts(texts, labels)


def paired(n: int, seed: int = 0) -> LabeledTexts:
    """Sentence pairs: a premise with a sentiment cue, and a neutral second sentence; the label is
    the premise's sentiment."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(sorted(WORDS))
        first = " ".join(rng.sample(FILLER, 3) + [rng.choice(WORDS[label])])
        texts.append((first, " ".join(rng.sample(FILLER, 4))))
        labels.append(label)
    return LabeledTexts(texts, labels)


def three_way(n: int, seed: int) -> list[dict]:
    """Rows of a 3-class task (positive / negative / neutral: no cue word), for auxiliary and
    intermediate tasks."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["negative", "neutral", "positive"])
        words = rng.sample(FILLER, rng.randint(2, 6)) + ([] if label == "neutral" else [rng.choice(WORDS[label])])
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows

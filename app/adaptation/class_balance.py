"""Class weights for the loss (`training.class_weights`) and the imbalance a job warns about.

"balanced" is scikit-learn's rule (`compute_class_weight`): a class of count n_c among n examples
and k classes weighs n / (k * n_c), so every class carries the same total weight. A job whose
largest class outnumbers its smallest IMBALANCE_RATIO times or more gets a data-quality event, as
Ludwig warns of imbalanced outputs: accuracy then says little, macro-F1 (in every report) says more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

IMBALANCE_RATIO = 10.0


def class_weights(option: str | dict[str, float], gold: Sequence[str], labels: list[str]) -> list[float]:
    """One weight per label, in `labels` order."""
    if isinstance(option, dict):
        unknown = sorted(set(option) - set(labels))
        if unknown:
            raise ValueError(
                f"training.class_weights names labels the training data does not have: {', '.join(map(repr, unknown))}"
            )
        return [float(option.get(label, 1.0)) for label in labels]
    counts = Counter(gold)
    return [len(gold) / (len(labels) * counts[label]) if counts[label] else 1.0 for label in labels]


def imbalance(gold: Sequence[str]) -> dict[str, Any] | None:
    """The counts of the largest and smallest class when they are IMBALANCE_RATIO apart, else None."""
    counts = Counter(gold)
    if len(counts) < 2:
        return None
    (largest, most), (smallest, least) = counts.most_common()[0], counts.most_common()[-1]
    ratio = most / least
    if ratio < IMBALANCE_RATIO:
        return None
    return {"largest": largest, "largest_count": most, "smallest": smallest, "smallest_count": least, "ratio": ratio}

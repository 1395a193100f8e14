#!/usr/bin/env python3
"""Accuracy of a Thaw model on a labeled CSV, computed from the API's own predictions.

    .venv/bin/python examples/evaluate.py MODEL_ID ../shared/datasets/trec/test.csv

Finds the service as `thaw` does: THAW_URL and THAW_API_KEY, else what `thaw login` saved.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from app.client import Thaw  # noqa: E402


def main() -> None:
    model_id, path = sys.argv[1], sys.argv[2]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    predicted: list[str] = []
    with Thaw() as thaw:
        for start in range(0, len(rows), 128):  # the API takes at most 256 texts per request
            predicted += [p.label for p in thaw.predict(model_id, [r["text"] for r in rows[start : start + 128]])]
    correct = sum(p == r["label"] for p, r in zip(predicted, rows, strict=True))
    print(f"{correct}/{len(rows)} correct: accuracy {correct / len(rows):.4f}")


if __name__ == "__main__":
    main()

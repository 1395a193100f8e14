#!/usr/bin/env python3
"""Accuracy of a Thaw model on a labeled CSV, computed from the API's own predictions.

    python3 examples/evaluate.py MODEL_ID ../shared/datasets/trec/test.csv

Reads THAW_URL (default http://127.0.0.1:8000) and THAW_KEY. Standard library only.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import urllib.request


def predict(url: str, key: str, model_id: str, texts: list[str]) -> list[str]:
    request = urllib.request.Request(
        f"{url}/v1/models/{model_id}/predict",
        data=json.dumps({"inputs": texts}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return [p["label"] for p in json.load(response)["predictions"]]


def main() -> None:
    model_id, path = sys.argv[1], sys.argv[2]
    url, key = os.environ.get("THAW_URL", "http://127.0.0.1:8000"), os.environ["THAW_KEY"]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    predicted: list[str] = []
    for start in range(0, len(rows), 128):
        predicted += predict(url, key, model_id, [r["text"] for r in rows[start : start + 128]])
    correct = sum(p == r["label"] for p, r in zip(predicted, rows, strict=True))
    print(f"{correct}/{len(rows)} correct: accuracy {correct / len(rows):.4f}")


if __name__ == "__main__":
    main()

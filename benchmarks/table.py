#!/usr/bin/env python3
"""Render benchmarks/results/strategies-*.json as the markdown table of docs/benchmarks.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def row(r: dict, anchor: float | None) -> str:
    share = r.get("trainable_share")
    memory = r.get("peak_memory_bytes")
    size = r.get("artifact_bytes")
    return " | ".join(
        [
            f"`{r['recipe']}`" if not r["recipe"].startswith("anchor") else r["recipe"],
            f"{100 * r['test_accuracy']:.1f}%",
            f"{100 * (r['test_accuracy'] - anchor):+.1f}" if anchor is not None else "",
            f"{r['train_seconds']:.0f} s" + (" †" if r.get("shared_cpu") else ""),
            (f"{100 * share:.3f}%" if share < 0.001 else f"{100 * share:.2f}%") if share is not None else "",
            f"{memory / 2**30:.2f} GiB" if memory else "",
            f"{size / 2**20:.1f} MiB" if size else "",
        ]
    )


def main() -> None:
    for path in sorted(RESULTS.glob("strategies-*.json")):
        data = json.loads(path.read_text())
        rows = data["rows"]
        anchor = next((r["test_accuracy"] for r in rows if r["recipe"].startswith("anchor")), None)
        protocol = data.get("protocol", "10% of train held out for validation")
        print(f"\n{data['dataset']}, {protocol} ({data['base_model']}, {data['machine']}):\n")
        print("| recipe | test accuracy | vs. anchor (points) | train time | trainable | peak memory | artifact |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {row(r, anchor)} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

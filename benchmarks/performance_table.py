#!/usr/bin/env python3
"""Render benchmarks/results/training.json and serving.json as the markdown of docs/benchmarks.md, ratios included.

.venv/bin/python benchmarks/performance_table.py [training.json] [serving.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return ""
    return f"{numerator / denominator:.2f}×"


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def machine_line(machine: dict[str, Any]) -> str:
    bf16 = "bf16 native" if machine.get("bf16_native") else "no native bf16"
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('device')}, {bf16}; "
        f"torch {machine.get('torch')}, transformers {machine.get('transformers')}; "
        f"commit {machine.get('commit')}, {machine.get('date')}"
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- training.json ---------------------------------------------------------------------------------


def training_markdown(document: dict[str, Any]) -> str:
    sections = document.get("sections", {})
    parts = []
    if "anchor" in sections or "thaw" in sections:
        parts.append(throughput_markdown(sections.get("anchor"), sections.get("thaw")))
    if "features" in sections:
        parts.append(features_markdown(sections["features"]))
    if "unfreezing" in sections:
        parts.append(unfreezing_markdown(sections["unfreezing"]))
    return "\n\n".join(parts)


def settings_line(section: dict[str, Any]) -> str:
    s = section["settings"]
    smoke = " **SMOKE RUN: sizes too small to mean anything**" if s.get("smoke") else ""
    return (
        f"{s['rows']} TREC training rows, {s['test_rows']} test rows, batch {s['batch_size']}, "
        f"max length {s['max_length']}, medians of {s['repeats']} runs after an untimed warm-up.{smoke}\n"
        f"Machine: {machine_line(section['machine'])}"
    )


def throughput_markdown(anchor: dict | None, thaw: dict | None) -> str:
    rows = (anchor or {}).get("rows", []) + (thaw or {}).get("rows", [])
    by_precision = {r["precision"]: r for r in (anchor or {}).get("rows", [])}
    hf_fp32, hf_bf16 = by_precision.get("fp32", {}), by_precision.get("bf16", {})
    body = [
        [
            r["name"],
            r["precision"],
            f"{r['train_seconds']:.1f} s",
            f"{r['examples_per_second']:.1f}",
            ratio(r["examples_per_second"], hf_fp32.get("examples_per_second")),
            ratio(r["examples_per_second"], hf_bf16.get("examples_per_second")),
            f"{r['total_seconds']:.1f} s",
            ratio(r["examples_per_second_total"], hf_fp32.get("examples_per_second_total")),
            percent(r["test_accuracy"]),
        ]
        for r in rows
    ]
    header = [
        "run",
        "precision",
        "train time",
        "examples/s",
        "speed vs HF fp32",
        "speed vs HF bf16",
        "total time (load + tokenise + train)",
        "total speed vs HF fp32",
        "test accuracy",
    ]
    first = anchor or thaw
    title = f"Training, {first['settings']['epochs']} epoch(s): Thaw against the Hugging Face `Trainer` script"
    apart = ""
    if anchor and thaw and anchor["machine"]["date"] != thaw["machine"]["date"]:
        apart = (
            f"\n\n**Not side by side**: the anchor rows are from {anchor['machine']['date']}, "
            f"Thaw's from {thaw['machine']['date']}; run `--sections anchor,thaw` to measure them together."
        )
    return f"{title}\n\n{settings_line(first)}\n\n{table(header, body)}{apart}"


def features_markdown(section: dict[str, Any]) -> str:
    rows = {r["name"]: r for r in section["rows"]}
    body = [
        [
            r["name"],
            str(r["epochs"]),
            f"{r['total_seconds']:.1f} s",
            f"{r['train_seconds']:.1f} s",
            str(r.get("features_cached", "")),
            percent(r["test_accuracy"]),
        ]
        for r in section["rows"]
    ]
    header = ["run", "epochs", "end to end", "train time", "features cached", "test accuracy"]
    lines = []
    anchor = rows.get("HF Trainer, 3 epochs") or rows.get("fine_tuning")
    for name, row in rows.items():
        if name.startswith("feature_extraction") and anchor:
            points = 100 * (row["test_accuracy"] - anchor["test_accuracy"])
            lines.append(
                f"- {name}: {ratio(anchor['total_seconds'], row['total_seconds'])} faster end to end than "
                f"{anchor['name']}, at {points:+.1f} points of test accuracy"
            )
    summary = "\n\n" + "\n".join(lines) if lines else ""
    title = "Feature extraction against fine-tuning, each with its recipe's epochs"
    return f"{title}\n\n{settings_line(section)}\n\n{table(header, body)}{summary}"


def unfreezing_markdown(section: dict[str, Any]) -> str:
    title = "Unfreezing schedules: `training.cache_frozen_layers` on against off"
    if section.get("skipped"):
        return f"{title}\n\n{section['skipped']}"
    pairs: dict[str, dict[bool, dict]] = {}
    for r in section["rows"]:
        pairs.setdefault(r["recipe"], {})[r["training"]["cache_frozen_layers"]] = r
    body = []
    for recipe, pair in pairs.items():
        on, off = pair.get(True, {}), pair.get(False, {})
        body.append(
            [
                f"`{recipe}`",
                str(on.get("epochs", off.get("epochs", ""))),
                f"{on['train_seconds']:.1f} s" if on else "",
                f"{off['train_seconds']:.1f} s" if off else "",
                ratio(off.get("train_seconds"), on.get("train_seconds")),
                percent(on.get("test_accuracy")),
                percent(off.get("test_accuracy")),
            ]
        )
    header = ["recipe", "epochs", "train time, cache on", "cache off", "speed-up", "test acc, on", "test acc, off"]
    return f"{title}\n\n{settings_line(section)}\n\n{table(header, body)}"


# ---- serving.json ----------------------------------------------------------------------------------


def serving_markdown(document: dict[str, Any]) -> str:
    s = document["settings"]
    smoke = " **SMOKE RUN: sizes too small to mean anything**" if s.get("smoke") else ""
    intro = (
        f"Serving over HTTP, one text per request: a `transformers.pipeline` behind FastAPI (sync handler, "
        f"one uvicorn process) against Thaw's API (one process). {s['warmup_seconds']} s warm-up, then "
        f"{s['seconds']} s per measurement; load generator in its own process.{smoke}\n"
        f"Machine: {machine_line(document['machine'])}\n"
        f"THAW_* settings: {json.dumps(s.get('thaw_env', {}))}"
    )
    body = [
        [
            r["server"],
            r["scenario"],
            str(r["clients"]),
            f"{r['requests_per_second']:.1f}",
            f"{r['p50_ms']:.1f} ms" if r["p50_ms"] is not None else "",
            f"{r['p95_ms']:.1f} ms" if r["p95_ms"] is not None else "",
            str(r["errors"]),
        ]
        for r in document["rows"]
    ]
    header = ["server", "scenario", "clients", "requests/s", "median latency", "p95 latency", "errors"]
    return "\n\n".join([intro, table(header, body), serving_ratios(document)])


def find(rows: list[dict], server: str, scenario: str, clients: int) -> dict[str, Any]:
    return next((r for r in rows if (r["server"], r["scenario"], r["clients"]) == (server, scenario, clients)), {})


def serving_ratios(document: dict[str, Any]) -> str:
    rows, settings = document["rows"], document["settings"]
    most, fewest = max(settings["clients"]), min(settings["clients"])
    anchor_most, thaw_most = find(rows, "anchor", "pipeline", most), find(rows, "thaw", "full model", most)
    anchor_one, thaw_one = find(rows, "anchor", "pipeline", fewest), find(rows, "thaw", "full model", fewest)
    adapter, mixed = find(rows, "thaw", "one adapter model", most), find(rows, "thaw", "mixed adapter models", most)
    lines = [
        f"- Thaw / anchor requests/s at {most} clients: "
        f"**{ratio(thaw_most.get('requests_per_second'), anchor_most.get('requests_per_second'))}**",
        f"- Thaw / anchor median latency at {fewest} client(s): "
        f"**{ratio(thaw_one.get('p50_ms'), anchor_one.get('p50_ms'))}** (below 1× is faster)",
        f"- mixed traffic over {settings['adapters']} adapter models / one adapter model, requests/s at {most} "
        f"clients: **{ratio(mixed.get('requests_per_second'), adapter.get('requests_per_second'))}**",
    ]
    memory = document.get("memory")
    if memory:
        mib = 2**20
        lines.append(
            f"- serve process memory (VmRSS): {memory['rss_idle_bytes'] / mib:.0f} MiB idle, "
            f"{memory['rss_after_full_bytes'] / mib:.0f} MiB with 1 full model, "
            f"{memory['rss_after_second_full_bytes'] / mib:.0f} MiB with 2, "
            f"{memory['rss_after_adapters_bytes'] / mib:.0f} MiB with {memory['adapters']} adapter models too"
        )
        lines.append(
            f"- memory of {memory['adapters']} adapter models / one full model: "
            f"**{ratio(memory['adapters_bytes'], memory['full_model_bytes'])}** "
            f"({memory['adapters_bytes'] / mib:.0f} MiB against {memory['full_model_bytes'] / mib:.0f} MiB, "
            f"the second full model's increment; the first one's, torch's own runtime included, was "
            f"{memory['first_full_model_bytes'] / mib:.0f} MiB)"
        )
    return "\n".join(lines)


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [RESULTS / "training.json", RESULTS / "serving.json"]
    for path in paths:
        if not path.exists():
            print(f"({path} does not exist yet)\n")
            continue
        document = json.loads(path.read_text())
        render = training_markdown if document.get("benchmark") == "training" else serving_markdown
        print(render(document) + "\n")


if __name__ == "__main__":
    main()

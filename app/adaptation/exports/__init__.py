"""A trained model as files that run without Thaw: a Hugging Face folder (`hf`) or an ONNX graph
(`onnx`), with its tokenizer; an ensemble as a folder of its members' exports and a manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from app.adaptation.artifact import read_card

MANIFEST = "thaw-ensemble.json"

# (model artifact, its base model's folder or None, output folder) -> None
Exporter = Callable[[Path, Path | None, Path], None]


def export_model(exporter: Exporter, directory: Path, base_of: Callable[[str], Path], out: Path) -> None:
    """Export a model's artifact into `out`; an ensemble member by member, under `members/<i>`, with
    a manifest saying how its members' probabilities combine. `base_of` finds a base model's folder."""
    card = read_card(directory)
    if card.get("kind") != "ensemble":
        exporter(directory, base_of(card["base_model"]) if card["weights"] == "own" else None, out)
        return
    members = []
    for entry in card["members"]:
        member_dir = directory / entry["path"]
        member_card = read_card(member_dir)
        base = base_of(entry["base_model"]) if member_card["weights"] == "own" else None
        exporter(member_dir, base, out / entry["path"])
        members.append({"path": entry["path"], "base_model": entry["base_model"], "recipe": entry["recipe"]})
    manifest = {
        "kind": "ensemble",
        "combine": "mean of the members' probabilities",
        "labels": card["labels"],
        "task": card.get("task", "single_label"),
        "threshold": card.get("threshold"),
        "members": members,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))

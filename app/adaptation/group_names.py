"""The names of an adapted model's layer groups, bottom-up: `embeddings`, `layer_1` (the bottom
encoder layer) .. `layer_n` (the top one), `new` (pooling and head). Unfreezing schedules speak
in these names; groups.py assigns the parameters to them."""

from __future__ import annotations

EMBEDDINGS, NEW = "embeddings", "new"


def layer_name(index: int) -> str:
    """The group of encoder layer `index` (0-based), named 1-based as in the papers."""
    return f"layer_{index + 1}"


def bottom_up(num_layers: int) -> list[str]:
    """Every group of a model with `num_layers` encoder layers, from the embeddings to the new layers."""
    return [EMBEDDINGS, *(layer_name(i) for i in range(num_layers)), NEW]

"""Layer groups of an adapted model, bottom-up: E (embeddings), L1..Ln (encoder layers), T (new layers).

Unfreezing schedules and discriminative learning rates act on these groups, as fastai's splitter
does for ULMFiT. Parameters are assigned by name, so adapters and LoRA weights inside layer i
belong to layer i. The embeddings group is the encoder's embeddings and the position tables or
projections its family keeps beside them (architectures.py); anything else of the encoder outside
its layers (a final layer norm) belongs to the top layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from app.adaptation.architectures import of_encoder
from app.adaptation.group_names import EMBEDDINGS, NEW, bottom_up, layer_name


@dataclass(frozen=True)
class LayerGroup:
    name: str
    depth_from_top: int  # new layers 0, top encoder layer 1, ..., embeddings n + 1
    parameter_names: tuple[str, ...]


def layer_prefix(encoder: nn.Module, num_layers: int) -> str:
    for name, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return f"{name}."
    raise ValueError(f"cannot find the {num_layers} encoder layers of {type(encoder).__name__}")


def _group_of(name: str, layers: str, embeddings: tuple[str, ...], num_layers: int) -> str:
    if not name.startswith("encoder."):
        return NEW
    inner = name[len("encoder.") :]
    if inner.startswith(embeddings):
        return EMBEDDINGS
    if inner.startswith(layers):
        return layer_name(int(inner[len(layers) :].split(".", 1)[0]))
    return layer_name(num_layers - 1)  # e.g. a final layer norm: part of the top layer


def layer_groups(model: nn.Module, num_layers: int) -> list[LayerGroup]:
    encoder = model.get_submodule("encoder")
    layers = layer_prefix(encoder, num_layers)
    embeddings = tuple(f"{module}." for module in of_encoder(encoder).embeddings)
    names: dict[str, list[str]] = {EMBEDDINGS: [], NEW: [], **{layer_name(i): [] for i in range(num_layers)}}
    for name, _ in model.named_parameters():
        names[_group_of(name, layers, embeddings, num_layers)].append(name)
    order = bottom_up(num_layers)
    return [LayerGroup(group, len(order) - 1 - i, tuple(names[group])) for i, group in enumerate(order)]

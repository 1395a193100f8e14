"""A trained classifier with its LoRA updates merged into the weights they change (W + (alpha / r) B A,
exact up to float rounding), so that the exported encoder is the base model's plain class."""

from __future__ import annotations

from peft.tuners.lora import LoraLayer
from torch import nn

from app.adaptation.adapters import WithAdapter


def merge_lora(encoder: nn.Module) -> int:
    """Merge every LoRA layer of `encoder` into its base layer, in place; returns how many."""
    merged = [name for name, module in encoder.named_modules() if isinstance(module, LoraLayer)]
    for name in merged:
        layer = encoder.get_submodule(name)
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(encoder.get_submodule(parent_name) if parent_name else encoder, child, layer.get_base_layer())
    return len(merged)


def adapter_modules(encoder: nn.Module) -> list[str]:
    """The paths of the linear layers that an adapter follows (they stay: an adapter's GELU cannot merge)."""
    return [name for name, module in encoder.named_modules() if isinstance(module, WithAdapter)]

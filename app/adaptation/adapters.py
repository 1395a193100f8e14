"""Bottleneck adapters (Houlsby et al. 2019): small residual MLPs inserted inside every layer.

The up-projection starts at zero, so an adapter is the identity at step 0 and the adapted model
computes exactly what the base model does until training moves it. Houlsby placement puts one after
the attention output projection and one after the feed-forward output projection of each layer;
Pfeiffer placement (Pfeiffer et al. 2020) only the second; architectures.py says which linear
layers those are in each encoder family. (Houlsby insert the adapter after the
projection's dropout; here it sits just before it, the same up to where dropout applies.)
"""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.architectures import Architecture, of_encoder
from app.adaptation.groups import layer_prefix
from app.schemas.spec import AdapterConfig


def places(architecture: Architecture, placement: str) -> tuple[str, ...]:
    """The linear layers of a layer that get an adapter after them, by placement."""
    if placement == "pfeiffer":
        return (architecture.feed_forward_output,)
    return (architecture.attention_output, architecture.feed_forward_output)


class Bottleneck(nn.Module):
    def __init__(self, hidden: int, size: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=1e-3)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))


class WithAdapter(nn.Module):
    """A pretrained linear layer followed by an adapter."""

    def __init__(self, inner: nn.Linear, size: int) -> None:
        super().__init__()
        self.inner = inner
        self.adapter = Bottleneck(inner.out_features, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.inner(x))


def add_adapters(encoder: nn.Module, config: AdapterConfig) -> None:
    architecture = of_encoder(encoder)
    num_layers = encoder.config.num_hidden_layers
    layers = encoder.get_submodule(layer_prefix(encoder, num_layers).rstrip("."))
    for layer in layers:
        for place in places(architecture, config.placement):
            parent_name, _, child = place.rpartition(".")
            parent = layer.get_submodule(parent_name)  # "" is the layer itself
            inner = getattr(parent, child, None)
            if not isinstance(inner, nn.Linear):
                raise ValueError(f"{architecture.model_type} layers have no linear layer `{place}` for an adapter")
            setattr(parent, child, WithAdapter(inner, config.size))


def is_adapter_parameter(name: str) -> bool:
    return ".adapter." in name

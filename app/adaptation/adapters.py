"""Bottleneck adapters (Houlsby et al. 2019): small residual MLPs inserted inside every layer.

The up-projection starts at zero, so an adapter is the identity at step 0 and the adapted model
computes exactly what the base model does until training moves it. Houlsby placement puts one after
the attention output projection and one after the feed-forward output projection of each layer;
Pfeiffer placement (Pfeiffer et al. 2020) only the second. (Houlsby insert the adapter after the
projection's dropout; here it sits just before it, the same up to where dropout applies.)
"""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.groups import layer_prefix
from app.schemas.spec import AdapterConfig

# Where the adapters go in a BERT-style layer, by placement.
PLACES = {"houlsby": ("attention.output.dense", "output.dense"), "pfeiffer": ("output.dense",)}


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
    num_layers = encoder.config.num_hidden_layers
    layers = encoder.get_submodule(layer_prefix(encoder, num_layers).rstrip("."))
    for layer in layers:
        for place in PLACES[config.placement]:
            parent_name, _, child = place.rpartition(".")
            try:
                parent = layer.get_submodule(parent_name)
                inner = getattr(parent, child)
            except AttributeError:
                raise ValueError(f"adapters need BERT-style layers with `{place}`; this encoder has none") from None
            setattr(parent, child, WithAdapter(inner, config.size))


def is_adapter_parameter(name: str) -> bool:
    return ".adapter." in name

"""Many adapter and LoRA models over one resident base encoder, in one forward pass.

Every model that trained only its own weights (adapters, LoRA, a head) differs from its base
encoder in a few small modules. Each base module that any loaded model changes is wrapped in a
`Routed` module; before a forward pass, `Routing` says which rows of the batch belong to which
model, and each wrapper applies that model's change to its rows only. The base's matrix products
run once for the whole batch, mixed models included; only the small per-model parts run per segment.

    LoRA (Hu et al. 2021):          y = W x + (alpha / r) B A x
    bottleneck adapter (Houlsby):   y' = y + up(gelu(down(y)))   on the wrapped layer's output
    own copy (Houlsby's adapters also train the layer norms): y = own_module(x)

The order matches training: LoRA changes a linear layer's own output, an adapter follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from app.adaptation.adapters import Bottleneck


@dataclass
class Routing:
    """Which rows of the current batch each model owns: (model key, start, end), contiguous."""

    segments: list[tuple[str, int, int]] = field(default_factory=list)


class LowRankUpdate(nn.Module):
    def __init__(self, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.a = nn.Linear(a.shape[1], a.shape[0], bias=False)
        self.b = nn.Linear(b.shape[1], b.shape[0], bias=False)
        with torch.no_grad():
            self.a.weight.copy_(a)
            self.b.weight.copy_(b)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) * self.scale


class Routed(nn.Module):
    """A base module shared by every model, plus each model's own change to it."""

    def __init__(self, base: nn.Module, routing: Routing) -> None:
        super().__init__()
        self.base, self.routing = base, routing
        self.own = nn.ModuleDict()  # model key -> its own copy of the module (e.g. a LayerNorm)
        self.low_rank = nn.ModuleDict()  # model key -> LowRankUpdate
        self.adapters = nn.ModuleDict()  # model key -> Bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.own and not self.low_rank and not self.adapters:
            return self.base(x)
        segments = self.routing.segments
        y = self.base(x) if any(key not in self.own for key, _, _ in segments) else None
        parts = []
        for key, start, end in segments:
            part = self.own[key](x[start:end]) if key in self.own else y[start:end]
            if key in self.low_rank:
                part = part + self.low_rank[key](x[start:end]).to(part.dtype)
            if key in self.adapters:
                part = self.adapters[key](part)
            parts.append(part)
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def detach_model(self, key: str) -> None:
        for parts in (self.own, self.low_rank, self.adapters):
            if key in parts:
                del parts[key]


def bottleneck_from(weights: dict[str, torch.Tensor]) -> Bottleneck:
    """An adapter from its saved `down.weight`, `down.bias`, `up.weight`, `up.bias`."""
    hidden, size = weights["up.weight"].shape
    adapter = Bottleneck(hidden, size)
    adapter.load_state_dict(weights)
    return adapter

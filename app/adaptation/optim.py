"""The optimizer: AdamW over one parameter group per layer group, with discriminative rates.

Discriminative fine-tuning (Howard & Ruder 2018, eq. 2 and section 3.2): group l's learning rate is
lr / decay^(distance of l from the top), so lower, more general layers move less. Biases and
LayerNorm weights get no weight decay, as in BERT's optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.groups import LayerGroup
from app.schemas.spec import JobSpec


def group_learning_rate(spec: JobSpec, group: LayerGroup) -> float:
    decay = spec.optimization.discriminative_decay
    return spec.training.learning_rate / decay**group.depth_from_top if decay else spec.training.learning_rate


def build_optimizer(model: nn.Module, groups: list[LayerGroup], spec: JobSpec) -> torch.optim.AdamW:
    # Every parameter is in the optimizer, frozen ones too: an unfreezing schedule may thaw them
    # later, and AdamW skips a parameter for as long as it has no gradient.
    named = dict(model.named_parameters())
    param_groups = []
    for group in groups:
        lr = group_learning_rate(spec, group)
        params = [(n, named[n]) for n in group.parameter_names]
        decayed = [p for n, p in params if p.ndim >= 2 and "LayerNorm" not in n]
        plain = [p for n, p in params if p.ndim < 2 or "LayerNorm" in n]
        for members, weight_decay in ((decayed, spec.optimization.weight_decay), (plain, 0.0)):
            if members:
                param_groups.append({"params": members, "lr": lr, "weight_decay": weight_decay, "group": group.name})
    # The fused kernel updates each tensor in one pass over its memory; the default (foreach) makes
    # about ten passes, and with MiniLM's 11.7M-row embedding matrix (its gradient is dense) those
    # passes were 40% of a training step on CPU (benchmarks/profile_training.py).
    return torch.optim.AdamW(param_groups, lr=spec.training.learning_rate, fused=fused_supported(model))


def fused_supported(model: nn.Module) -> bool:
    """PyTorch's fused AdamW takes floating-point tensors on CPU and CUDA."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in model.parameters())

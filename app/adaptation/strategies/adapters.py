"""Adapters (Houlsby et al. 2019): only the adapters, the layer norms and the new layers train."""

from __future__ import annotations

from torch import nn

from app.adaptation.adapters import is_adapter_parameter
from app.adaptation.model import TextClassifier
from app.adaptation.strategies import STRATEGIES


def layer_norm_parameters(model: nn.Module) -> set[str]:
    """The parameters of every layer norm, found by type: BERT names them `LayerNorm`, DistilBERT
    `sa_layer_norm`, ModernBERT `mlp_norm`."""
    return {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, nn.LayerNorm)
        for name, _ in module.named_parameters(recurse=False)
    }


@STRATEGIES.register("adapters")
def adapters(model: TextClassifier) -> None:
    norms = layer_norm_parameters(model)
    for name, parameter in model.named_parameters():
        new = not name.startswith("encoder.")
        parameter.requires_grad_(new or is_adapter_parameter(name) or name in norms)

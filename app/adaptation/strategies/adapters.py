"""Adapters (Houlsby et al. 2019): only the adapters, the layer norms and the new layers train."""

from __future__ import annotations

from app.adaptation.adapters import is_adapter_parameter
from app.adaptation.model import TextClassifier
from app.adaptation.strategies import STRATEGIES


@STRATEGIES.register("adapters")
def adapters(model: TextClassifier) -> None:
    for name, parameter in model.named_parameters():
        new = not name.startswith("encoder.")
        parameter.requires_grad_(new or is_adapter_parameter(name) or "LayerNorm" in name)

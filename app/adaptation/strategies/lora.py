"""LoRA (Hu et al. 2021): only the low-rank updates and the new layers train."""

from __future__ import annotations

from app.adaptation.lora import is_lora_parameter
from app.adaptation.model import TextClassifier
from app.adaptation.strategies import STRATEGIES


@STRATEGIES.register("lora")
def lora(model: TextClassifier) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith("encoder.") or is_lora_parameter(name))

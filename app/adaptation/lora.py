"""LoRA (Hu et al. 2021) through the peft library: W x + (alpha / r) * B A x on the target linear
layers, with B = 0 at the start so the model is unchanged until training moves it."""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import inject_adapter_in_model
from torch import nn

from app.adaptation.architectures import lora_targets, of_encoder
from app.schemas.spec import LoraConfig


def add_lora(encoder: nn.Module, config: LoraConfig) -> nn.Module:
    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=lora_targets(of_encoder(encoder), config.target_modules),
    )
    try:
        return inject_adapter_in_model(peft_config, encoder)
    except ValueError as error:  # peft: "Target modules {...} not found in the base model"
        raise ValueError(f"model.lora.target_modules: {error}") from None


def is_lora_parameter(name: str) -> bool:
    return ".lora_" in name

"""The adapted model: a pretrained encoder (optionally with adapters or LoRA inside), a pooling and
a new task head."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from app.adaptation.adapters import add_adapters
from app.adaptation.architectures import encoder_inputs
from app.adaptation.heads import HEADS
from app.adaptation.lora import add_lora
from app.adaptation.pooling import POOLINGS
from app.schemas.spec import ModelConfig


class TextClassifier(nn.Module):
    def __init__(self, encoder: PreTrainedModel, config: ModelConfig, num_labels: int) -> None:
        super().__init__()
        # The pretraining pooler ([CLS] -> tanh) is a pretraining head: remove it so it neither
        # counts as trainable nor receives updates it cannot use.
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        if config.adapters is not None:
            add_adapters(encoder, config.adapters)
        if config.lora is not None:
            encoder = add_lora(encoder, config.lora)
        self.encoder = encoder
        self.num_layers: int = encoder.config.num_hidden_layers
        hidden = encoder.config.hidden_size
        self.pooling = POOLINGS.get(config.pooling)(hidden, self.num_layers)
        self.head = HEADS.get(config.head)(hidden, num_labels, config)
        # Heads that only training uses (auxiliary tasks, slices, the masked-LM head); emptied
        # before the model is saved, so an artifact holds the encoder, pooling and head alone.
        self.extra_heads = nn.ModuleDict()
        self.encoder_frozen = False

    def freeze_encoder(self) -> None:
        """Feature extraction: the encoder's weights stay as pretrained and it runs in eval mode."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.encoder_frozen = True

    def train(self, mode: bool = True) -> TextClassifier:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()  # no dropout in a frozen feature extractor
        return self

    def reduce(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The encoder's output, reduced by the pooling to a few vectors per text (cacheable)."""
        extra = encoder_inputs(self.encoder, token_type_ids)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **extra)
        return self.pooling.reduce(out.hidden_states, attention_mask)

    def from_reduced(self, reduced: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooling.combine(reduced))

    def pooled(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One vector per text: what the head, and any extra head, reads."""
        return self.pooling.combine(self.reduce(input_ids, attention_mask, token_type_ids))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.from_reduced(self.reduce(input_ids, attention_mask, token_type_ids))


def load_pretrained_encoder(path: Path) -> PreTrainedModel:
    """Only safetensors weights are read, and no code from the model directory ever runs."""
    return AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=False)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

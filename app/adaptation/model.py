"""The adapted model: a pretrained encoder, a pooling and a new task head."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from app.adaptation.heads import HEADS
from app.adaptation.pooling import POOLINGS
from app.schemas.spec import ModelConfig


class TextClassifier(nn.Module):
    def __init__(self, encoder: PreTrainedModel, config: ModelConfig, num_labels: int) -> None:
        super().__init__()
        # The pretraining pooler ([CLS] -> tanh) is a pretraining head: remove it so it neither
        # counts as trainable nor receives updates it cannot use.
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.pooling = POOLINGS.get(config.pooling)(hidden, encoder.config.num_hidden_layers)
        self.head = HEADS.get(config.head)(hidden, num_labels, config.dropout)
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

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return self.pooling(out.hidden_states, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask))


def load_pretrained_encoder(path: Path) -> PreTrainedModel:
    """Only safetensors weights are read, and no code from the model directory ever runs."""
    return AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=False)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

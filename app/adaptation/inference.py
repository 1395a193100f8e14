"""Class probabilities for texts, in input order, in length-sorted batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from app.adaptation.data import Text, token_batches
from app.adaptation.model import TextClassifier


@torch.inference_mode()
def predict_logits(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Text],
    max_length: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """The head's float32 outputs for texts, in input order (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    batches = token_batches(tokenizer, texts, max_length, None, batch_size)
    logits: torch.Tensor | None = None
    for batch in batches.by_length():
        types = None if batch.token_type_ids is None else batch.token_type_ids.to(device)
        out = model(batch.input_ids.to(device), batch.attention_mask.to(device), types).float()
        if logits is None:
            logits = torch.empty(len(texts), out.shape[-1])
        logits[batch.indices] = out.cpu()
    if logits is None:
        raise ValueError("no texts to predict")
    return logits


def predict_proba(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Text],
    max_length: int,
    batch_size: int = 64,
    multi_label: bool = False,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Softmax probabilities (one label per text), or one sigmoid per label (multi_label); a
    `temperature` other than 1 divides the logits first (distillation's softened targets)."""
    logits = predict_logits(model, tokenizer, texts, max_length, batch_size) / temperature
    return logits.sigmoid() if multi_label else logits.softmax(dim=-1)

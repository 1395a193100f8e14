"""Class probabilities for texts, in input order, in length-sorted batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from app.adaptation.data import Batches, Text, encode
from app.adaptation.model import TextClassifier


@torch.inference_mode()
def predict_proba(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Text],
    max_length: int,
    batch_size: int = 64,
    multi_label: bool = False,
) -> torch.Tensor:
    """Softmax probabilities (one label per text), or one sigmoid per label (multi_label)."""
    model.eval()
    device = next(model.parameters()).device
    batches = Batches(encode(tokenizer, texts, max_length), None, batch_size, tokenizer.pad_token_id)
    probabilities: torch.Tensor | None = None
    for batch in batches.by_length():
        logits = model(batch.input_ids.to(device), batch.attention_mask.to(device)).float()
        if probabilities is None:
            probabilities = torch.empty(len(texts), logits.shape[-1])
        probabilities[batch.indices] = (logits.sigmoid() if multi_label else logits.softmax(dim=-1)).cpu()
    if probabilities is None:
        raise ValueError("no texts to predict")
    return probabilities

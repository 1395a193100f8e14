"""Layer-by-layer states of an encoder, for matching a student's layers to a teacher's (Patient
Knowledge Distillation, Sun et al. 2019): each layer's output mean-pooled over the text's tokens,
and the distance PKD puts between a student's and a teacher's normalised vectors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from app.adaptation.data import Text, token_batches


def pooled_layers(hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
    """[rows, layers, hidden]: every given layer output (rows, tokens, hidden) averaged over the
    row's real tokens."""
    states = torch.stack(list(hidden_states), dim=1)
    mask = attention_mask[:, None, :, None].to(states.dtype)
    return (states * mask).sum(dim=2) / mask.sum(dim=2).clamp(min=1)


def logits_and_layers(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A classifier's logits and its pooled layer outputs (embeddings excluded), from one forward."""
    out = model.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    logits = model.from_reduced(model.pooling.reduce(out.hidden_states, attention_mask))
    return logits, pooled_layers(out.hidden_states[1:], attention_mask)


@torch.no_grad()
def teacher_layers(
    teacher: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Text],
    max_length: int,
    layers: list[int],
    batch_size: int = 64,
) -> torch.Tensor:
    """[texts, len(layers), hidden] in float16 (what matching needs, at half the memory): the
    teacher's pooled outputs of `layers` (0 = its bottom layer), in input order."""
    teacher.eval()
    device = next(teacher.parameters()).device
    result: torch.Tensor | None = None
    for batch in token_batches(tokenizer, texts, max_length, None, batch_size).by_length():
        mask = batch.attention_mask.to(device)
        out = teacher.encoder(input_ids=batch.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
        pooled = pooled_layers([out.hidden_states[i + 1] for i in layers], mask).half().cpu()
        if result is None:
            result = torch.empty(len(texts), *pooled.shape[1:], dtype=torch.float16)
        result[batch.indices] = pooled
    if result is None:
        raise ValueError("no texts to read the teacher's layers on")
    return result


def patient_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """PKD's L_PT (Sun et al. 2019, eq. 3): over the matched layers, the squared distance between
    the student's and the teacher's unit-normalised vectors, summed, averaged over rows."""
    s = nn.functional.normalize(student.float(), dim=-1)
    t = nn.functional.normalize(teacher.float(), dim=-1)
    return (s - t).pow(2).sum(dim=(-1, -2)).mean()

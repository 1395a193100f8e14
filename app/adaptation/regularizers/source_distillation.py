"""Distillation from a source model (Hinton et al. 2015, applied against forgetting as in Li & Hoiem
2016): weight * T^2 * KL(p_source || p_model), both softened at temperature T, on every batch.
The source model shares the base model's tokenizer and the task's labels (checked at submission)."""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.model import TextClassifier
from app.adaptation.regularizers import REGULARIZERS, RegularizerContext
from app.schemas.spec import SourceDistillation


class SourceDistillationPenalty:
    needs_inputs = True

    def __init__(self, options: SourceDistillation, context: RegularizerContext) -> None:
        self.weight, self.temperature = options.weight, options.temperature
        self.source = context.source_models[options.source_model].to(context.device).eval()
        for p in self.source.parameters():
            p.requires_grad_(False)

    def penalty(self, model: TextClassifier, input_ids, attention_mask, logits) -> torch.Tensor:
        with torch.inference_mode():
            source_logits = self.source(input_ids, attention_mask)
        t = self.temperature
        target = torch.softmax(source_logits.clone() / t, dim=-1)
        kl = nn.functional.kl_div(torch.log_softmax(logits / t, dim=-1), target, reduction="batchmean")
        return self.weight * t * t * kl


@REGULARIZERS.register("source_distillation")
def source_distillation(options: SourceDistillation, context: RegularizerContext) -> SourceDistillationPenalty:
    return SourceDistillationPenalty(options, context)

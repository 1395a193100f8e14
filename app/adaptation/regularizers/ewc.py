"""Elastic weight consolidation (Kirkpatrick et al. 2017, eq. 3): lambda/2 * sum_i F_i (w_i - w0_i)^2,
with F the diagonal Fisher of the pretraining-like objective at the pretrained weights w0.

The Fisher is estimated as the mean squared gradient of the masked-LM loss (Devlin et al. 2019) on
the named unlabeled text, before fine-tuning starts: weights the language model relies on are held
closer to where they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from app.adaptation.regularizers import REGULARIZERS, RegularizerContext, is_pretrained
from app.schemas.references import DatasetRef, Reference
from app.schemas.spec_base import Named

if TYPE_CHECKING:
    import torch

    from app.adaptation.model import TextClassifier
    from app.schemas.spec import JobSpec


class EWC(Named):
    name: Literal["ewc"] = "ewc"
    weight: float = Field(1.0, ge=0, description="lambda: strength of the Fisher-weighted pull.")
    fisher_data: str = Field(description="Dataset whose text estimates the Fisher (masked-LM objective).")
    fisher_batches: int = Field(16, ge=1, le=10_000, description="Batches used for the estimate.")

    def references(self, job: JobSpec) -> Iterator[Reference]:
        yield DatasetRef("fisher_data", self.fisher_data, (job.text_field,))


def estimate_fisher(context: RegularizerContext, texts: list[str], batches: int) -> dict[str, torch.Tensor]:
    import torch  # here, not at the top: the job spec reads this module's options without torch

    from app.adaptation.data import Batches
    from app.adaptation.masked_lm import mask_tokens, masked_lm_loss

    model, tokenizer = context.model, context.tokenizer
    encoded = tokenizer(texts, truncation=True, max_length=context.max_length, return_special_tokens_mask=True)
    ids, special = encoded["input_ids"], encoded["special_tokens_mask"]
    token_batches = Batches(ids, None, context.batch_size, tokenizer.pad_token_id)
    maskable_batches = Batches([[1 - s for s in row] for row in special], None, context.batch_size, 0)
    generator = torch.Generator().manual_seed(context.seed)
    params = {n: p for n, p in model.named_parameters() if is_pretrained(n)}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training, used = model.training, 0
    model.eval()
    for batch, maskable in zip(token_batches.by_length(), maskable_batches.by_length(), strict=True):
        if used == batches:
            break
        inputs, targets = mask_tokens(batch.input_ids, maskable.input_ids, tokenizer.mask_token_id, 0.15, generator)
        if (targets >= 0).sum() == 0:
            continue
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            masked_lm_loss(
                model.encoder,
                inputs.to(context.device),
                batch.attention_mask.to(context.device),
                targets.to(context.device),
            ).backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach().pow(2)
        used += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: f / max(used, 1) for n, f in fisher.items()}


@REGULARIZERS.register(EWC)
class EWCPenalty:
    needs_inputs = False

    def __init__(self, options: EWC, context: RegularizerContext) -> None:
        texts = context.resources.texts_of(options.fisher_data, context.text_field)
        self.weight = options.weight
        frozen = {n: p.requires_grad for n, p in context.model.named_parameters()}
        for p in context.model.parameters():
            p.requires_grad_(True)  # the Fisher needs gradients of every pretrained weight
        self.fisher = estimate_fisher(context, texts, options.fisher_batches)
        for n, p in context.model.named_parameters():
            p.requires_grad_(frozen[n])
        self.anchors = {n: p.detach().clone() for n, p in context.model.named_parameters() if n in self.fisher}

    def penalty(self, model: TextClassifier, input_ids, attention_mask, logits) -> torch.Tensor:
        total = logits.new_zeros(())
        for name, weight in model.named_parameters():
            if weight.requires_grad and name in self.fisher:
                total = total + (self.fisher[name] * (weight - self.anchors[name]).pow(2)).sum()
        return self.weight / 2 * total

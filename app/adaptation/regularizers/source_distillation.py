"""Distillation from a source model (Hinton et al. 2015, applied against forgetting as in Li & Hoiem
2016): weight * T^2 * KL(p_source || p_model), both softened at temperature T, on every batch.
The source model shares the base model's tokenizer and the task's labels (checked at submission)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from app.adaptation.regularizers import REGULARIZERS, RegularizerContext
from app.schemas.references import ModelRef, Reference
from app.schemas.spec_base import Named

if TYPE_CHECKING:
    import torch

    from app.adaptation.model import TextClassifier
    from app.schemas.spec import JobSpec


class SourceDistillation(Named):
    name: Literal["source_distillation"] = "source_distillation"
    source_model: str = Field(description="Id of a trained model with the same labels whose predictions anchor.")
    weight: float = Field(1.0, ge=0, description="Weight of the KL term.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of both distributions.")

    def references(self, job: JobSpec) -> Iterator[Reference]:
        yield ModelRef("source_model", self.source_model, "source", job.base_model)


@REGULARIZERS.register(SourceDistillation)
class SourceDistillationPenalty:
    needs_inputs = True

    def __init__(self, options: SourceDistillation, context: RegularizerContext) -> None:
        self.weight, self.temperature = options.weight, options.temperature
        self.source = context.resources.classifier(options.source_model).to(context.device).eval()
        for p in self.source.parameters():
            p.requires_grad_(False)

    def penalty(self, model: TextClassifier, input_ids, attention_mask, logits) -> torch.Tensor:
        import torch  # here, not at the top: the job spec reads this module's options without torch

        with torch.inference_mode():
            source_logits = self.source(input_ids, attention_mask)
        t = self.temperature
        target = (source_logits.clone() / t).softmax(dim=-1)
        kl = torch.nn.functional.kl_div((logits / t).log_softmax(dim=-1), target, reduction="batchmean")
        return self.weight * t * t * kl

"""L2-SP (Li, Grandvalet & Davoine 2018, eq. 3): alpha/2 * ||w - w0||^2 over the pretrained weights
(w0: their pretrained values) plus beta/2 * ||w||^2 over the new ones. Its gradient is
alpha * (w - w0) for a pretrained weight and beta * w for a new one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from app.adaptation.regularizers import REGULARIZERS, RegularizerContext, is_pretrained
from app.schemas.spec_base import Named

if TYPE_CHECKING:
    import torch

    from app.adaptation.model import TextClassifier


class L2SP(Named):
    name: Literal["l2_sp"] = "l2_sp"
    alpha: float = Field(0.01, ge=0, description="Pull of pretrained weights toward their starting point.")
    beta: float = Field(0.01, ge=0, description="Plain L2 on the new weights (Li et al. 2018).")


@REGULARIZERS.register(L2SP)
class L2SPPenalty:
    needs_inputs = False

    def __init__(self, options: L2SP, context: RegularizerContext) -> None:
        self.alpha, self.beta = options.alpha, options.beta
        self.anchors = {n: p.detach().clone() for n, p in context.model.named_parameters() if is_pretrained(n)}

    def penalty(self, model: TextClassifier, input_ids, attention_mask, logits) -> torch.Tensor:
        pulled = logits.new_zeros(())
        decayed = logits.new_zeros(())
        for name, weight in model.named_parameters():
            if not weight.requires_grad:
                continue  # a frozen weight's term is constant
            if name in self.anchors:
                pulled = pulled + (weight - self.anchors[name]).pow(2).sum()
            else:
                decayed = decayed + weight.pow(2).sum()
        return self.alpha / 2 * pulled + self.beta / 2 * decayed

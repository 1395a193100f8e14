"""Semi-supervised consistency (`consistency`): unsupervised data augmentation, Xie et al. 2020.

For unlabeled x and its perturbation x', the loss is KL(target(x) || p(x')), where target(x) is the
model's own prediction on x, computed without gradient (the gradient reaches the model through x'
alone), sharpened by a softmax temperature, and kept only for examples whose top probability
reaches the confidence threshold (UDA's "training signal annealing" is not built).
"""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.data import Batch, StepBatches, token_batches
from app.adaptation.masked_lm import maskable_positions
from app.adaptation.model import TextClassifier
from app.adaptation.objectives import OBJECTIVES, ObjectiveContext, StepInputs
from app.adaptation.perturbations import PERTURBATIONS, Tokens
from app.adaptation.seeding import step_generator
from app.schemas.signal import Consistency


def consistency_loss(
    target_logits: torch.Tensor,
    perturbed_logits: torch.Tensor,
    sharpen_temperature: float | None,
    confidence_threshold: float | None,
) -> torch.Tensor:
    """Mean over the batch of KL(sharpened target || softmax(perturbed)); unconfident rows count as 0."""
    target_logits = target_logits.detach().float()
    confident = torch.ones(len(target_logits), dtype=torch.bool, device=target_logits.device)
    if confidence_threshold is not None:
        confident = target_logits.softmax(-1).max(-1).values >= confidence_threshold
    scaled = target_logits / sharpen_temperature if sharpen_temperature is not None else target_logits
    log_target = scaled.log_softmax(-1)  # in log space, so that equal predictions give exactly 0
    log_p = perturbed_logits.float().log_softmax(-1)
    per_row = nn.functional.kl_div(log_p, log_target, reduction="none", log_target=True).sum(-1)
    return (per_row * confident).sum() / len(per_row)


class ConsistencyObjective:
    needs_inputs = True  # runs the encoder on its own batches
    main_weight = 1.0

    def __init__(self, options: Consistency, context: ObjectiveContext) -> None:
        spec, tokenizer = context.spec, context.tokenizer
        self.options, self.device, self.seed = options, context.device, spec.training.seed
        texts = context.resources.texts_of(options.data, options.text_field or spec.text_field, options.max_examples)
        size = spec.training.batch_size * options.batch_ratio
        self.batches = StepBatches(token_batches(tokenizer, texts, spec.training.max_length, None, size), self.seed)
        self.special_ids = tokenizer.all_special_ids
        self.mask_id, self.pad_id = tokenizer.mask_token_id, tokenizer.pad_token_id
        self.perturb = PERTURBATIONS.get(options.perturbation.name)

    def loss(self, model: TextClassifier, inputs: StepInputs) -> torch.Tensor:
        batch = self.batches.at(inputs.step)
        ids, mask = self.perturbed(batch, inputs.step)
        with torch.no_grad():
            target = model(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))
        perturbed = model(ids.to(self.device), mask.to(self.device))
        options = self.options
        return options.weight * consistency_loss(
            target, perturbed, options.sharpen_temperature, options.confidence_threshold
        )

    def perturbed(self, batch: Batch, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        maskable = maskable_positions(batch.input_ids, batch.attention_mask, self.special_ids)
        tokens = Tokens(batch.input_ids, batch.attention_mask, maskable, self.mask_id, self.pad_id)
        return self.perturb(tokens, self.options.perturbation, step_generator(self.seed, step))


@OBJECTIVES.register("consistency")
def consistency(context: ObjectiveContext) -> ConsistencyObjective | None:
    options = context.spec.consistency
    return None if options is None else ConsistencyObjective(options, context)

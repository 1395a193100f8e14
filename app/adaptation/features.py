"""Cached frozen features: with the encoder frozen, run it once per example and train on the result.

The pooling's `reduce` output (one vector per layer for scalar_mix, one for the others) is computed
once for the training and validation sets; every epoch then costs only the head. Batches of cached
features look like token batches to the trainer (`FeatureCache`, a trainer hook, swaps them in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from app.adaptation.data import Batch, Batches, FixedBatches
from app.adaptation.hooks import Hook
from app.adaptation.model import TextClassifier
from app.adaptation.precision import autocast, resolve

if TYPE_CHECKING:
    from app.adaptation.trainer import Trainer


@torch.no_grad()  # not inference_mode: the cached tensors are inputs of the head's backward pass
def reduce_all(model: TextClassifier, batches: Batches) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    features: torch.Tensor | None = None
    for batch in batches.by_length():
        types = None if batch.token_type_ids is None else batch.token_type_ids.to(device)
        reduced = model.reduce(batch.input_ids.to(device), batch.attention_mask.to(device), types).float().cpu()
        if features is None:
            features = torch.empty(len(batches.ids), *reduced.shape[1:])
        features[batch.indices] = reduced
    assert features is not None, "no examples to encode"
    return features


class FeatureBatches(FixedBatches):
    def __init__(self, features: torch.Tensor, labels: list | None, batch_size: int) -> None:
        self.features, self.batch_size = features, batch_size
        self.labels = None if labels is None else torch.tensor(labels)

    @property
    def count(self) -> int:
        return len(self.features)

    def batch(self, indices: list[int]) -> Batch:
        labels = None if self.labels is None else self.labels[indices]
        return Batch(indices, None, None, labels, features=self.features[indices])


class FeatureCache(Hook):
    """A frozen encoder gives the same features every epoch: compute them once, before the first
    step, and train the head on them. Not where a step reads the tokens (`needs_inputs`: a
    regularizer, objective or auxiliary task runs the encoder itself)."""

    def __init__(self, needs_inputs: bool) -> None:
        self.needs_inputs = needs_inputs

    def on_fit_start(self, trainer: Trainer) -> None:
        model, train = trainer.model, trainer.train_batches
        if not isinstance(model, TextClassifier) or not model.encoder_frozen or self.needs_inputs:
            return
        if not isinstance(train, Batches):
            return  # multi-task batches: the auxiliary tasks read tokens
        trainer.outcome.features_cached = True
        trainer.callbacks.on_event("features_cached", "frozen encoder: features computed once per example", {})
        validation = trainer.validation_batches
        with autocast(trainer.device, resolve(trainer.spec.training.precision, trainer.device)):
            train_features = reduce_all(model, train)  # the one forward pass of a feature-extraction job
            validation_features = None if validation is None else reduce_all(model, validation)
        trainer.train_batches = FeatureBatches(train_features, train.labels, trainer.spec.training.batch_size)
        if validation_features is not None:
            trainer.validation_batches = FeatureBatches(validation_features, None, 256)

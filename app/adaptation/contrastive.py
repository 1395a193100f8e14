"""Contrastive sentence-pair fine-tuning (`contrastive`), SetFit's first step (Tunstall et al. 2022,
"Efficient Few-Shot Learning Without Prompts").

Pairs come from the labeled rows as SetFit's `sentence_pairs_generation` makes them: in each of R
iterations every row is paired once with a row of its own class (target 1) and once with a row of
another class (target 0). The encoder, through the model's own pooling, learns to give a pair the
cosine similarity of its target (CosineSimilarityLoss: mean squared error of the cosine). The
classification head then trains on the tuned encoder as usual (the setfit recipe: head only).

The run is one more trainer run (trainer.py), so it reports progress, pauses, resumes and
checkpoints like every other; once finished it hands its weights on through the checkpoints, so a
resumed job does not run it again.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from app.adaptation.callbacks import Callbacks
from app.adaptation.checkpoint import Checkpointing, Checkpoints
from app.adaptation.data import Batch, FixedBatches, LabeledTexts, encode, pad_rows
from app.adaptation.model import TextClassifier
from app.adaptation.precision import autocast, resolve
from app.adaptation.schedules import SCHEDULES
from app.adaptation.trainer import Trainer
from app.schemas.signal import ContrastivePairs
from app.schemas.spec import JobSpec

FINISHED = "contrastive"  # the checkpoints' name of the finished run


def sentence_pairs(labels: Sequence[Any], iterations: int, seed: int) -> list[tuple[int, int, float]]:
    """(row, row, target) pairs: per iteration, each row with one row of its class (1.0) and one
    of another class (0.0). A class of one row pairs it with itself, as SetFit does."""
    rng = random.Random(seed)
    by_label: dict[Any, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    others = {label: [i for i, other in enumerate(labels) if other != label] for label in by_label}
    pairs: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for index, label in enumerate(labels):
            same = by_label[label]
            partner = rng.choice([i for i in same if i != index] or same)
            pairs.append((index, partner, 1.0))
            pairs.append((index, rng.choice(others[label]), 0.0))
    return pairs


def cosine_similarity_loss(first: torch.Tensor, second: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' CosineSimilarityLoss: MSE between cos(u, v) and the pair's target."""
    return nn.functional.mse_loss(nn.functional.cosine_similarity(first.float(), second.float()), targets)


class PairBatches(FixedBatches):
    """Batches of pairs; a batch holds both sides' token ids, the first texts then the second,
    padded to their longest, so one forward pass encodes the whole batch."""

    def __init__(self, ids: list[list[int]], pairs: list[tuple[int, int, float]], batch_size: int, pad_id: int):
        self.ids, self.pairs, self.batch_size, self.pad_id = ids, pairs, batch_size, pad_id

    @property
    def count(self) -> int:
        return len(self.pairs)

    def batch(self, indices: list[int]) -> Batch:
        rows = [self.ids[self.pairs[p][0]] for p in indices] + [self.ids[self.pairs[p][1]] for p in indices]
        input_ids, mask = pad_rows(rows, self.pad_id)
        targets = torch.tensor([self.pairs[p][2] for p in indices], dtype=torch.float32)
        return Batch(indices, input_ids, mask, targets)


class ContrastiveLoss:
    """The StepLoss (trainer.py) of the pair run: encode both sides, score their cosine."""

    def __init__(self, model: TextClassifier, pairs: PairBatches, dtype: torch.dtype) -> None:
        self.model, self.pairs, self.dtype = model, pairs, dtype
        self.device = next(model.parameters()).device

    def batches(self, train: Any, validation: Any | None) -> tuple[PairBatches, None]:
        return self.pairs, None

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert batch.input_ids is not None and batch.attention_mask is not None and batch.labels is not None
        with autocast(self.device, self.dtype):
            pooled = self.model.pooled(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))
        first, second = pooled.chunk(2)
        loss = cosine_similarity_loss(first, second, batch.labels.to(self.device))
        return loss, loss.detach()

    def evaluate(self, batches: Any, gold: list) -> dict[str, Any]:
        raise NotImplementedError("the pair run has no validation")


def pair_job(spec: JobSpec, options: ContrastivePairs) -> JobSpec:
    """The job the pair run trains by: the options' rate, batch and epochs, linear decay, every
    weight of the encoder, none of the main task's regularizers or schedules."""
    training = spec.training.model_copy(
        update={"epochs": options.epochs, "learning_rate": options.learning_rate, "batch_size": options.batch_size}
    )
    optimization = spec.optimization.model_copy(
        update={"train": "all", "lr_schedule": SCHEDULES.default("linear_warmup")(), "regularizers": []}
    )
    return spec.model_copy(update={"training": training, "optimization": optimization})


def contrastive_run(
    spec: JobSpec,
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    train: LabeledTexts,
    callbacks: Callbacks,
    progress_interval: float,
    checkpoints: Checkpoints | None,
) -> tuple[dict[str, Any], set[str]]:
    """Tune `model`'s encoder (and pooling) on pairs of `train`'s rows in place; returns the run's
    report and the parameters it trained."""
    options = spec.contrastive
    assert options is not None
    done = checkpoints.finished(FINISHED) if checkpoints is not None else None
    if done is not None:
        weights, report = done
        model.load_state_dict(weights, strict=False)
        callbacks.on_event(
            "contrastive_finished", "contrastive pairs: finished before the resume, not run again", report
        )
        return report, set(report["trained"])
    pairs = sentence_pairs(train.labels, options.pairs_per_example, spec.training.seed)
    if options.max_pairs is not None and len(pairs) > options.max_pairs:
        pairs = random.Random(spec.training.seed).sample(pairs, options.max_pairs)
    job = pair_job(spec, options)
    ids = encode(tokenizer, train.texts, spec.training.max_length)
    batches = PairBatches(ids, pairs, options.batch_size, tokenizer.pad_token_id or 0)
    dtype = resolve(spec.training.precision, next(model.parameters()).device)
    for parameter in [*model.encoder.parameters(), *model.pooling.parameters()]:
        parameter.requires_grad_(True)
    label = "contrastive pairs"
    callbacks.on_event(
        "contrastive_started",
        f"{label}: {len(pairs)} pairs of {len(train)} rows, {options.epochs} epoch(s)",
        {"pairs": len(pairs), "rows": len(train)},
    )
    hooks = [Checkpointing(checkpoints.phase(FINISHED))] if checkpoints is not None else []
    trainer = Trainer(model, ContrastiveLoss(model, batches, dtype), job, callbacks, progress_interval, hooks, label)
    outcome = trainer.fit(None)
    trained = sorted(n for n, p in model.named_parameters() if n in trainer.touched and not n.startswith("head."))
    last_loss = outcome.loss_curve[-1]["loss"] if outcome.loss_curve else None
    report = {"pairs": len(pairs), "steps": outcome.steps, "final_loss": last_loss, "trained": trained}
    callbacks.on_event("contrastive_finished", f"{label}: {outcome.steps} steps, final loss {last_loss}", report)
    if checkpoints is not None:
        state = {n: v for n, v in model.state_dict().items() if not n.startswith("head.")}
        checkpoints.mark_finished(FINISHED, state, report)
    return report, set(trained)

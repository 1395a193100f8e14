"""The training loop: AdamW, a registered lr schedule, evaluation each epoch, the best epoch kept.

It holds no strategy logic: which weights train was decided before it starts (requires_grad).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from app.adaptation.callbacks import Callbacks, Cancelled, Progress
from app.adaptation.data import Batches, LabeledTexts, encode
from app.adaptation.inference import predict_proba
from app.adaptation.metrics import classification_report
from app.adaptation.model import TextClassifier
from app.adaptation.schedules import SCHEDULES
from app.schemas.spec import JobSpec


@dataclass
class TrainOutcome:
    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False


def evaluate(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    data: LabeledTexts,
    labels: list[str],
    max_length: int,
) -> dict[str, Any]:
    probabilities = predict_proba(model, tokenizer, data.texts, max_length)
    predicted = [labels[i] for i in probabilities.argmax(dim=-1).tolist()]
    return classification_report(data.labels, predicted, labels)


def build_optimizer(model: nn.Module, spec: JobSpec) -> torch.optim.Optimizer:
    # No weight decay on biases and LayerNorm weights, as in BERT's original optimizer.
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": spec.optimization.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=spec.training.learning_rate)


class Trainer:
    def __init__(
        self,
        model: TextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        labels: list[str],
        spec: JobSpec,
        callbacks: Callbacks,
        progress_interval: float = 1.0,
    ) -> None:
        self.model, self.tokenizer, self.labels, self.spec = model, tokenizer, labels, spec
        self.callbacks, self.progress_interval = callbacks, progress_interval
        self.device = next(model.parameters()).device

    def fit(self, train: LabeledTexts, validation: LabeledTexts) -> TrainOutcome:
        cfg = self.spec.training
        label_ids = {label: i for i, label in enumerate(self.labels)}
        batches = Batches(
            encode(self.tokenizer, train.texts, cfg.max_length),
            [label_ids[label] for label in train.labels],
            cfg.batch_size,
            self.tokenizer.pad_token_id,
        )
        total_steps = len(batches) * cfg.epochs
        optimizer = build_optimizer(self.model, self.spec)
        schedule = SCHEDULES.get(self.spec.optimization.lr_schedule)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: schedule(step, total_steps, self.spec.optimization)
        )
        rng = random.Random(cfg.seed)
        outcome = TrainOutcome(best_epoch=0, best_metrics={})
        best_state: dict[str, torch.Tensor] = {}
        self._started = time.monotonic()
        self._last_report = self._started
        for epoch in range(1, cfg.epochs + 1):
            self.model.train()
            loss_sum, loss_steps = torch.zeros((), device=self.device), 0
            for batch in batches.training_order(rng):
                loss = self._step(batch.input_ids, batch.attention_mask, batch.labels, optimizer, scheduler)
                loss_sum += loss
                loss_steps += 1
                outcome.steps += 1
                if time.monotonic() - self._last_report >= self.progress_interval:
                    mean_loss = (loss_sum / loss_steps).item()
                    loss_sum, loss_steps = torch.zeros((), device=self.device), 0
                    self._report(epoch, outcome.steps, total_steps, mean_loss, scheduler.get_last_lr()[0])
            metrics = evaluate(self.model, self.tokenizer, validation, self.labels, cfg.max_length)
            summary = {"epoch": epoch, "step": outcome.steps, **_summary(metrics)}
            outcome.history.append(summary)
            self.callbacks.on_event(
                "evaluated",
                f"epoch {epoch}: accuracy {metrics['accuracy']:.4f}, macro_f1 {metrics['macro_f1']:.4f}",
                summary,
            )
            score = metrics[cfg.eval_metric]
            if not outcome.best_metrics or score > outcome.best_metrics[cfg.eval_metric]:
                outcome.best_epoch, outcome.best_metrics = epoch, metrics
                best_state = self._trainable_state()
            elif cfg.early_stopping_patience and epoch - outcome.best_epoch >= cfg.early_stopping_patience:
                outcome.stopped_early = True
                self.callbacks.on_event("early_stopped", f"no improvement since epoch {outcome.best_epoch}", {})
                break
        self.model.load_state_dict(best_state, strict=False)
        return outcome

    def _step(self, input_ids, attention_mask, labels, optimizer, scheduler) -> torch.Tensor:
        logits = self.model(input_ids.to(self.device), attention_mask.to(self.device))
        loss = nn.functional.cross_entropy(logits, labels.to(self.device))
        loss.backward()
        if self.spec.optimization.max_grad_norm is not None:
            trainable = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(trainable, self.spec.optimization.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _report(self, epoch: int, step: int, total: int, loss: float | None, lr: float | None) -> None:
        self._last_report = time.monotonic()
        self.callbacks.on_progress(
            Progress(
                "train",
                epoch,
                self.spec.training.epochs,
                step,
                total,
                self._last_report - self._started,
                loss,
                lr,
            )
        )
        if self.callbacks.should_stop():
            raise Cancelled(f"stopped at step {step} of {total}")

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        # Frozen weights never change, so the trainable ones (and buffers) fix the best epoch.
        params = dict(self.model.named_parameters())
        return {
            key: value.detach().clone()
            for key, value in self.model.state_dict().items()
            if key not in params or params[key].requires_grad
        }


def _summary(metrics: dict[str, Any]) -> dict[str, float]:
    return {"accuracy": round(metrics["accuracy"], 6), "macro_f1": round(metrics["macro_f1"], 6)}

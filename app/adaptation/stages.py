"""Stages (`stages`): runs before the main task that change the encoder's own weights, in order.

masked_lm: domain-adaptive masked-LM fine-tuning on the stage's text (ULMFiT's second step, with
BERT's objective), through a tied LM head made for the run (`TiedLMHead`) and dropped after it.
classification: an intermediate task (STILTs, Phang et al. 2018), trained by the usual trainer with
its own head, which is dropped. Each finished stage hands its encoder weights on through the
checkpoints, so a resumed job does not run it again.
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.adaptation.callbacks import Callbacks, Cancelled, Labelled, Progress
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.data import Batches, TaskData, token_batches
from app.adaptation.labels import check_labels, split_validation
from app.adaptation.masked_lm import TiedLMHead, masked_batch_loss
from app.adaptation.model import TextClassifier
from app.adaptation.objectives import step_generator
from app.adaptation.precision import autocast, resolve
from app.adaptation.resources import Resources
from app.adaptation.schedules import SCHEDULES
from app.adaptation.seeding import part_seed, seed_everything
from app.adaptation.strategies import STRATEGIES
from app.adaptation.tasks import TASKS, label_names
from app.adaptation.trainer import Trainer
from app.schemas.recipes import stage_spec
from app.schemas.signal import Stage
from app.schemas.spec import JobSpec

HELD_OUT_TEXTS = 500  # at most this many (and a tenth of the stage's text) measure the masked-LM loss


def run_stages(
    spec: JobSpec,
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    resources: Resources,
    callbacks: Callbacks,
    progress_interval: float,
    checkpoints: Checkpoints | None,
) -> list[dict[str, Any]]:
    """Run every stage on `encoder` in place; returns what each reported."""
    reports: list[dict[str, Any]] = []
    if not spec.stages:
        return reports
    # The pretraining pooler is no part of any model here (TextClassifier drops it too): without it,
    # a finished stage's weights load into the next attempt's freshly loaded encoder.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    for index, stage in enumerate(spec.stages):
        name, label = f"stage-{index + 1}", f"stage {index + 1}/{len(spec.stages)} ({stage.objective})"
        seed_everything(part_seed(spec.training.seed, index + 1))
        done = checkpoints.finished(name) if checkpoints is not None else None
        if done is not None:
            weights, report = done
            encoder.load_state_dict(weights)
            callbacks.on_event("stage_finished", f"{label}: finished before the resume, not run again", report)
            reports.append(report)
            continue
        job = stage_spec(spec, index)
        callbacks.on_event("stage_started", f"{label} on dataset {stage.data}", {"stage": index + 1})
        if stage.objective == "masked_lm":
            texts = resources.texts_of(stage.data, job.text_field, stage.max_examples)
            report = masked_lm_stage(stage, job, encoder, tokenizer, texts, callbacks, progress_interval, label)
        else:
            data = resources.labeled(stage.data, job.text_field, job.label_field, stage.max_examples)
            phase = checkpoints.phase(name) if checkpoints is not None else None
            marked = Labelled(callbacks, label, {"stage": index + 1})
            report = classification_stage(job, encoder, tokenizer, data, marked, progress_interval, phase)
        report = {"stage": index + 1, "objective": stage.objective, "data": stage.data, **report}
        callbacks.on_event("stage_finished", f"{label}: {_summary(report)}", report)
        if checkpoints is not None:
            checkpoints.mark_finished(name, encoder.state_dict(), report)
        reports.append(report)
    seed_everything(part_seed(spec.training.seed, len(spec.stages) + 1))  # the main task's part
    return reports


def _summary(report: dict[str, Any]) -> str:
    if "held_out_loss_before" in report:
        return f"held-out masked-LM loss {report['held_out_loss_before']:.3f} -> {report['held_out_loss_after']:.3f}"
    return f"{report['examples']} examples, validation accuracy {report.get('accuracy', float('nan')):.4f}"


# ---- masked LM ------------------------------------------------------------------------------------


def masked_lm_stage(
    stage: Stage,
    job: JobSpec,
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    callbacks: Callbacks,
    progress_interval: float,
    label: str,
) -> dict[str, Any]:
    """Masked-LM fine-tuning of `encoder` on `texts` with the stage recipe's learning rate, schedule,
    weight decay and clipping (unfreezing and discriminative rates apply to classification stages)."""
    cfg, device = job.training, next(encoder.parameters()).device
    order = list(range(len(texts)))
    random.Random(cfg.seed).shuffle(order)
    held = min(HELD_OUT_TEXTS, len(texts) // 10)
    held_out = token_batches(tokenizer, [texts[i] for i in order[:held]], cfg.max_length, None, 64)
    train = token_batches(tokenizer, [texts[i] for i in order[held:]], cfg.max_length, None, cfg.batch_size)
    head = TiedLMHead(encoder).to(device)
    loss_of = _MaskedLoss(encoder, head, tokenizer, stage.mask_rate, resolve(cfg.precision, device))
    before = loss_of.held_out(held_out, cfg.seed) if held else None
    optimizer = _adamw(nn.ModuleList([encoder, head]), job)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    total_steps = len(train) * cfg.epochs
    schedule, options = SCHEDULES.get(job.optimization.lr_schedule.name), job.optimization.lr_schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step, total_steps, options))
    rng, step, started = random.Random(cfg.seed), 0, time.monotonic()
    last_report, losses = started, []
    encoder.train()
    head.train()
    for epoch in range(1, cfg.epochs + 1):
        for batch in train.training_order(rng):
            loss = loss_of(batch, step_generator(cfg.seed, step))
            loss.backward()
            if job.optimization.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(trainable, job.optimization.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            step += 1
            if step % len(train) == 0 or time.monotonic() - last_report >= progress_interval:  # an epoch's end, too
                last_report = time.monotonic()
                mean = torch.stack(losses).mean().item()
                losses.clear()
                progress = Progress(
                    label, epoch, cfg.epochs, step, total_steps, last_report - started, mean, scheduler.get_last_lr()[0]
                )
                callbacks.on_progress(progress)
                if callbacks.should_stop():
                    raise Cancelled(f"stopped in {label} at step {step} of {total_steps}")
    after = loss_of.held_out(held_out, cfg.seed) if held else None
    report: dict[str, Any] = {"examples": len(texts) - held, "steps": step, "seconds": time.monotonic() - started}
    if held:
        report.update(held_out_texts=held, held_out_loss_before=before, held_out_loss_after=after)
    return report


class _MaskedLoss:
    def __init__(self, encoder, head: TiedLMHead, tokenizer, rate: float, dtype: torch.dtype) -> None:
        self.encoder, self.head, self.rate, self.dtype = encoder, head, rate, dtype
        self.special_ids, self.mask_id = tokenizer.all_special_ids, tokenizer.mask_token_id
        self.device = next(encoder.parameters()).device

    def __call__(self, batch, generator: torch.Generator) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            ids, mask = batch.input_ids.to(self.device), batch.attention_mask.to(self.device)
            loss = masked_batch_loss(
                self.encoder, self.head, ids, mask, self.special_ids, self.mask_id, self.rate, generator
            )
        return loss.float()

    @torch.no_grad()
    def held_out(self, batches: Batches, seed: int) -> float:
        """Mean masked-LM loss over the held-out text, with the same masks every time it is measured."""
        was_training = self.encoder.training
        self.encoder.eval()
        self.head.eval()
        losses = [self(batch, step_generator(seed, -1 - i)).item() for i, batch in enumerate(batches.by_length())]
        self.encoder.train(was_training)
        self.head.train(was_training)
        return sum(losses) / len(losses)


def _adamw(module: nn.Module, job: JobSpec) -> torch.optim.AdamW:
    """AdamW with BERT's split: no weight decay on biases and LayerNorm weights."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    decayed = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
    plain = [p for n, p in named if p.ndim < 2 or "LayerNorm" in n]
    groups = [
        {"params": decayed, "weight_decay": job.optimization.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=job.training.learning_rate)


# ---- classification -------------------------------------------------------------------------------


def classification_stage(
    job: JobSpec,
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data,
    callbacks: Callbacks,
    progress_interval: float,
    checkpoints: Checkpoints | None,
) -> dict[str, Any]:
    """An intermediate task on the encoder; the encoder keeps the weights of the stage's best epoch."""
    train, validation, _ = split_validation(job, TaskData(data))
    labels = check_labels("single_label", train, {"validation": validation})
    model = TextClassifier(encoder, job.model, len(labels))
    STRATEGIES.get("all")(model)
    model.to(next(encoder.parameters()).device)
    task = TASKS.get("single_label")(labels, None)
    trainer = Trainer(model, tokenizer, task, job, callbacks, progress_interval)
    outcome = trainer.fit(train, validation, checkpoints)
    report: dict[str, Any] = {"examples": len(train), "labels": label_names("single_label", train.labels)}
    report.update({k: outcome.best_metrics[k] for k in ("accuracy", "macro_f1") if k in outcome.best_metrics})
    return report

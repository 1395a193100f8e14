"""Stages (`stages`): runs before the main task that change the encoder's own weights, in order.

masked_lm: domain-adaptive masked-LM fine-tuning on the stage's text (ULMFiT's second step, with
BERT's objective), through a tied LM head made for the run (`TiedLMHead`) and dropped after it.
classification: an intermediate task (STILTs, Phang et al. 2018) with its own head, which is
dropped. Both train through the same trainer as the main task, so they pause and resume like it;
each runs the job its stage carries (`Stage.job`, expanded at submission). Each finished stage
hands its encoder weights on through the checkpoints, so a resumed job does not run it again.
"""

from __future__ import annotations

import random
import time
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.adaptation.callbacks import Callbacks, Labelled
from app.adaptation.checkpoint import Checkpointing, Checkpoints
from app.adaptation.classification import classification_trainer
from app.adaptation.data import TaskData, token_batches
from app.adaptation.labels import check_labels, split_validation
from app.adaptation.masked_lm import MaskedLanguageModel, MaskedLMLoss
from app.adaptation.model import TextClassifier
from app.adaptation.precision import resolve
from app.adaptation.resources import Resources
from app.adaptation.seeding import part_seed, seed_everything
from app.adaptation.strategies import STRATEGIES
from app.adaptation.tasks import TASKS, label_names
from app.adaptation.trainer import Trainer
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
        job = stage_job(stage, index)
        callbacks.on_event("stage_started", f"{label} on dataset {stage.data}", {"stage": index + 1})
        phase = checkpoints.phase(name) if checkpoints is not None else None
        marked = Labelled(callbacks, label, {"stage": index + 1})
        if stage.objective == "masked_lm":
            texts = resources.texts_of(stage.data, job.text_field, stage.max_examples)
            report = masked_lm_stage(stage, job, encoder, tokenizer, texts, marked, progress_interval, phase)
        else:
            data = resources.labeled(stage.data, job.text_field, job.label_field, stage.max_examples)
            report = classification_stage(job, encoder, tokenizer, data, marked, progress_interval, phase)
        report = {"stage": index + 1, "objective": stage.objective, "data": stage.data, **report}
        callbacks.on_event("stage_finished", f"{label}: {_summary(report)}", report)
        if checkpoints is not None:
            checkpoints.mark_finished(name, encoder.state_dict(), report)
        reports.append(report)
    seed_everything(part_seed(spec.training.seed, len(spec.stages) + 1))  # the main task's part
    return reports


def stage_job(stage: Stage, index: int) -> JobSpec:
    if stage.job is None:
        raise ValueError(
            f"stages.{index} carries no job: expand the spec first (app.schemas.recipes.expand), as the service does"
        )
    return stage.job


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
    checkpoints: Checkpoints | None,
) -> dict[str, Any]:
    """Masked-LM fine-tuning of `encoder` on `texts` with the stage job's learning rate, schedule,
    weight decay and clipping; a held-out share of the text measures the loss before and after."""
    started = time.monotonic()
    order = list(range(len(texts)))
    random.Random(job.training.seed).shuffle(order)
    held = min(HELD_OUT_TEXTS, len(texts) // 10)
    device = next(encoder.parameters()).device
    model = MaskedLanguageModel(encoder).to(device)
    STRATEGIES.get("all")(model)
    step_loss = MaskedLMLoss(model, tokenizer, job, stage.mask_rate, resolve(job.training.precision, device))
    held_out = token_batches(tokenizer, [texts[i] for i in order[:held]], job.training.max_length, None, 64)
    before = _held_out_loss(step_loss, held_out) if held else None
    hooks = [Checkpointing(checkpoints)] if checkpoints is not None else []
    trainer = Trainer(model, step_loss, job, callbacks, progress_interval, hooks, stage="masked_lm")
    outcome = trainer.fit([texts[i] for i in order[held:]])
    after = _held_out_loss(step_loss, held_out) if held else None
    seconds = time.monotonic() - started
    report: dict[str, Any] = {"examples": len(texts) - held, "steps": outcome.steps, "seconds": seconds}
    if held:
        report.update(held_out_texts=held, held_out_loss_before=before, held_out_loss_after=after)
    return report


def _held_out_loss(step_loss: MaskedLMLoss, batches: Any) -> float:
    model = step_loss.model
    was_training = model.training
    model.eval()
    try:
        return step_loss.evaluate(batches)["masked_lm_loss"]
    finally:
        model.train(was_training)


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
    trainer = classification_trainer(model, tokenizer, task, job, callbacks, progress_interval, checkpoints=checkpoints)
    outcome = trainer.fit(train, validation)
    report: dict[str, Any] = {"examples": len(train), "labels": label_names("single_label", train.labels)}
    report.update({k: outcome.best_metrics[k] for k in ("accuracy", "macro_f1") if k in outcome.best_metrics})
    return report

"""One model's job, no server needed: its stages (on the encoder), SetFit's contrastive pairs when
asked, then the main task with its objectives and sampled auxiliary tasks (and optionally the main
task alone), chosen on held-out rows and refit on every row (refit.py), and the temperature that
calibrates it folded into its head (calibration.py). An ensemble runs this for each member
(ensemble.py); `adapt` (job.py) chooses.

Called in every process of a distributed run (distributed.py), it trains the main task with
DistributedDataParallel; rank 0 reports, tests the kept model and returns the result to save.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from app.adaptation.artifact import save_classifier
from app.adaptation.calibration import expected_calibration_error, fold_temperature, settle_on_validation
from app.adaptation.callbacks import Callbacks
from app.adaptation.checkpoint import Checkpoints
from app.adaptation.class_balance import class_weights, imbalance
from app.adaptation.contrastive import contrastive_run
from app.adaptation.data import LabeledTexts, TaskData
from app.adaptation.distributed import current_world, total_over_ranks
from app.adaptation.inference import predict_logits, predict_proba
from app.adaptation.labels import InvalidTaskData, check_labels, split_validation
from app.adaptation.main_task import MainRun, train_main_task
from app.adaptation.memory import MemoryWindow
from app.adaptation.model import TextClassifier, count_parameters, load_pretrained_encoder
from app.adaptation.objectives.slices import slice_metrics
from app.adaptation.precision import allow_tf32
from app.adaptation.precision import resolve as resolve_precision
from app.adaptation.refit import choose_then_refit, refit_refusal
from app.adaptation.regularizers import REGULARIZERS, Regularizer, RegularizerContext
from app.adaptation.resources import Resources, lead_member
from app.adaptation.result import AdaptationResult
from app.adaptation.seeding import seed_everything
from app.adaptation.stages import run_stages
from app.adaptation.strategies import STRATEGIES
from app.adaptation.student import cut_encoder, teacher_start
from app.adaptation.tasks import TASKS, Task
from app.adaptation.trainer import TrainOutcome
from app.schemas.spec import JobSpec


class BaseModelUnloadable(RuntimeError):
    """The base model's directory does not hold a loadable encoder and tokenizer."""


def load_base(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        return load_pretrained_encoder(path), AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise BaseModelUnloadable(f"cannot load the base model: {type(error).__name__}: {error}") from error


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_regularizers(spec: JobSpec, context: RegularizerContext) -> list[Regularizer]:
    return [REGULARIZERS.get(options.name)(options, context) for options in spec.optimization.regularizers]


def adapt_single(
    spec: JobSpec,
    data: TaskData,
    base_model_path: Path,
    callbacks: Callbacks,
    progress_interval: float,
    resources: Resources,
    checkpoints: Checkpoints | None,
) -> AdaptationResult:
    """Train one model. With `checkpoints`, the run writes them as it goes and, when one exists
    already (a run of the same spec and data that died or paused), goes on from it."""
    world = current_world()
    train, validation, held_out = split_validation(spec, data)
    labels = check_labels(spec.task, train, {"validation": validation, "test": data.test})
    if spec.teacher is not None:
        labels = teacher_labels(spec.teacher, resources, labels)
    task = TASKS.get(spec.task)(labels, spec.threshold)
    if not task.multi_label:
        weigh_classes(spec, task, train, labels, callbacks)
    seed_everything(spec.training.seed)
    device = pick_device()
    memory = MemoryWindow(device)  # this job's peak, not the pool process's lifetime one
    if device.type == "cuda":
        allow_tf32()  # the fp32 products that autocast leaves (and all of a `precision: fp32` job)
    encoder, tokenizer = load_base(base_model_path)
    depth = encoder.config.num_hidden_layers
    kept = list(range(depth))
    if spec.student_layers is not None:
        kept = cut_encoder(encoder, spec.student_layers)
        callbacks.on_event("student", f"student: layers {kept} of the base model's {depth} kept", {"layers": kept})
    encoder.to(device)
    started = time.monotonic()
    phased = checkpoints is not None and (
        bool(spec.stages) or spec.main_task_epochs > 0 or spec.contrastive is not None
    )
    stage_reports = run_stages(spec, encoder, tokenizer, resources, callbacks, progress_interval, checkpoints)
    model = TextClassifier(encoder, spec.model, len(labels)).to(device)
    if spec.distilling is not None and spec.distilling.student_init == "teacher":
        start_from_teacher(spec, model, resources, kept, depth, callbacks)
    contrastive, paired = None, set()
    if spec.contrastive is not None:  # the encoder first learns from pairs of the rows (SetFit)
        contrastive, paired = contrastive_run(spec, model, tokenizer, train, callbacks, progress_interval, checkpoints)
    STRATEGIES.get(spec.optimization.train)(model)
    _, total = count_parameters(model)
    compute = "bf16" if resolve_precision(spec.training.precision, device) == torch.bfloat16 else "fp32"
    callbacks.on_event(
        "training_started",
        f"{len(train)} train / {len(validation or [])} validation examples on {device.type} ({compute})",
        {
            "train_examples": len(train),
            "validation_examples": len(validation or []),
            "validation_held_out_from_train": held_out,
            "labels": labels,
            "device": device.type,
            "precision": compute,
        },
    )
    context = RegularizerContext(
        model,
        tokenizer,
        device,
        spec.training.max_length,
        spec.training.batch_size,
        spec.training.seed,
        spec.text_field,
        resources,
    )
    regularizers = build_regularizers(spec, context)
    main_run = MainRun(spec, model, tokenizer, task, callbacks, progress_interval, regularizers, resources)
    outcome, touched, earlier_seconds, calibration, refit = fit_main_task(
        main_run, train, validation, data.train, held_out, checkpoints, phased
    )
    model.extra_heads = nn.ModuleDict()  # training-only heads are not part of the model
    # What trained is what an unfreezing schedule actually thawed (top_only never thaws the bottom).
    touched |= paired
    trainable = sum(p.numel() for name, p in model.named_parameters() if name in touched)
    if calibration is not None:
        fold_temperature(model.head, calibration["temperature"])
    train_seconds = time.monotonic() - started + earlier_seconds
    metrics: dict[str, Any] = {
        **outcome.best_metrics,
        "best_epoch": outcome.best_epoch,
        "validation_held_out_from_train": held_out,
        "stopped_early": outcome.stopped_early,
        "features_cached": outcome.features_cached,
        "refit": refit,
        "calibration": calibration,
        **({"contrastive": {k: v for k, v in contrastive.items() if k != "trained"}} if contrastive else {}),
        "precision": compute,
        "resumed_from_step": outcome.resumed_from_step,
        "history": outcome.history,
        "phases": outcome.phases,
        "loss_curve": outcome.loss_curve,
        **signal_metrics(spec, stage_reports, outcome),
    }
    if not world.is_main:  # a replica of rank 0's model, which rank 0 alone tests and saves
        peak = total_over_ranks(world, memory.peak(), device)  # rank 0 joins after testing
        return AdaptationResult(
            model.cpu(), tokenizer, labels, metrics, None, trainable, total, train_seconds, peak, main=False
        )
    if data.test is not None:
        metrics["test"] = evaluate(model, tokenizer, data.test, task, spec.training.max_length, calibration)
    if spec.slices:
        parts = {"validation": validation, "test": data.test}
        metrics["slices"] = {
            name: slices_of(spec, model, tokenizer, part, task) for name, part in parts.items() if part
        }
    peak = total_over_ranks(world, memory.peak(), device)  # a job of N processes used all N
    return AdaptationResult(
        model.cpu(), tokenizer, labels, metrics, task.threshold, trainable, total, train_seconds, peak
    )


def fit_main_task(
    run: MainRun,
    train: LabeledTexts,
    validation: LabeledTexts | None,
    every_row: LabeledTexts,
    held_out: bool,
    checkpoints: Checkpoints | None,
    phased: bool,
) -> tuple[TrainOutcome, set[str], float, dict[str, Any] | None, dict[str, int] | None]:
    """The main task: chosen on the held-out rows, then refit on every row (refit.py), or trained
    once where the job refits nothing. Returns the outcome, the parameters that trained, the
    seconds of earlier attempts, the calibration fitted on validation and what the refit did."""
    refusal = refit_refusal(run.spec, held_out)
    if refusal is None:
        selection, outcome, touched, earlier = choose_then_refit(run, train, validation, every_row, checkpoints)
        refit = {"epochs": outcome.best_epoch, "train_examples": len(every_row)}
        return outcome, touched, earlier, selection.calibration, refit
    if held_out:
        run.callbacks.on_event("refit_skipped", f"no refit: {refusal}", {"reason": refusal})
    outcome, touched, earlier = train_main_task(
        **run.arguments(),
        train=train,
        validation=validation,
        checkpoints=checkpoints.phase("main") if phased else checkpoints,
        alone_checkpoints=checkpoints.phase("main-alone") if phased else None,
    )
    run.model.extra_heads = nn.ModuleDict()
    # Every rank settles the same (deterministic, same rows), so the replicas stay equal.
    calibration = settle_on_validation(run.spec, run.model, run.tokenizer, run.task, validation, outcome)
    return outcome, touched, earlier, calibration, None


def evaluate(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    data: LabeledTexts,
    task: Task,
    max_length: int,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The task's report on `data`; single_label adds the ECE, and with a folded-in temperature the
    ECE the uncalibrated model had (its logits times the temperature)."""
    if task.multi_label:
        return task.report(data.labels, predict_proba(model, tokenizer, data.texts, max_length, multi_label=True))
    logits = predict_logits(model, tokenizer, data.texts, max_length)
    report = task.report(data.labels, logits.softmax(dim=-1))
    targets = torch.tensor(task.targets(data.labels))
    report["ece"] = expected_calibration_error(logits.softmax(dim=-1), targets)
    if calibration is not None:
        before = (logits * calibration["temperature"]).softmax(dim=-1)
        report["ece_uncalibrated"] = expected_calibration_error(before, targets)
    return report


def slices_of(
    spec: JobSpec, model: TextClassifier, tokenizer: PreTrainedTokenizerBase, data: LabeledTexts, task: Task
) -> dict[str, dict[str, Any]]:
    probabilities = predict_proba(model, tokenizer, data.texts, spec.training.max_length, multi_label=task.multi_label)
    return slice_metrics(spec, tokenizer, data, probabilities, task)


def weigh_classes(spec: JobSpec, task: Task, train: LabeledTexts, labels: list[str], callbacks: Callbacks) -> None:
    """Warn of a strongly imbalanced training set; weigh the loss as training.class_weights says."""
    skew = imbalance(train.labels)
    if skew is not None:
        hint = "" if spec.training.class_weights else '; training.class_weights "balanced" weighs them equally'
        callbacks.on_event(
            "data_quality",
            f"imbalanced training set: {skew['largest']!r} has {skew['largest_count']} rows, {skew['smallest']!r} "
            f"{skew['smallest_count']} ({skew['ratio']:.0f}x); read macro_f1 beside accuracy{hint}",
            {"issue": "class_imbalance", **skew},
        )
    if spec.training.class_weights:
        try:
            weights = class_weights(spec.training.class_weights, train.labels, labels)
        except ValueError as error:
            raise InvalidTaskData(str(error)) from None
        task.weigh(weights)
        named = dict(zip(labels, weights, strict=True))
        summary = ", ".join(f"{label}={weight:.3g}" for label, weight in named.items())
        callbacks.on_event("class_weights", f"class weights: {summary}", {"weights": named})


def start_from_teacher(
    spec: JobSpec, model: TextClassifier, resources: Resources, kept: list[int], depth: int, callbacks: Callbacks
) -> None:
    """The student takes the teacher's weights where they fit (student.teacher_start); a teacher on
    another base (other layer count), or stages that already trained the encoder, leave it as it
    is, and the event says so."""
    source = lead_member(resources.teacher(spec.teacher)).model
    layers = source.encoder.config.num_hidden_layers
    if spec.stages or layers != depth:  # the stages' encoder is what they trained; keep it
        reason = (
            "its stages trained the encoder" if spec.stages else f"the teacher has {layers} layers, the base {depth}"
        )
        message = f"student starts from the base model: {reason}"
        callbacks.on_event("student_init", message, {"from": "base", "copied": 0})
        return
    copied, own = teacher_start(model, source, kept)
    message = f"student starts from the teacher's weights ({copied} tensors; {len(own)} of its own)"
    callbacks.on_event("student_init", message, {"from": "teacher", "copied": copied, "own": own[:20]})


def teacher_labels(teacher_id: str, resources: Resources, labels: list[str]) -> list[str]:
    """A student predicts the teacher's labels, in the teacher's order; its data may use fewer."""
    teacher = resources.teacher(teacher_id)
    outside = sorted(set(labels) - set(teacher.labels))
    if outside:
        raise InvalidTaskData(
            f"the training data has labels the teacher {teacher_id!r} does not: {', '.join(map(repr, outside[:10]))}"
        )
    return list(teacher.labels)


def signal_metrics(spec: JobSpec, stage_reports: list[dict[str, Any]], outcome: TrainOutcome) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if stage_reports:
        metrics["stages"] = stage_reports
    if spec.tasks or len(outcome.task_steps) > 1:  # auxiliary tasks, or distillation's transfer steps
        metrics["task_steps"] = outcome.task_steps
    if spec.teacher is not None:
        metrics["distillation"] = {"teacher": spec.teacher, "student_layers": spec.student_layers}
    return metrics


def save_single(result: AdaptationResult, spec: JobSpec, directory: Path) -> int:
    """Write a finished model; strategies that freeze the base store only their own weights,
    unless stages or a cut changed the encoder they sit on."""
    return save_classifier(
        result.model,
        result.tokenizer,
        result.labels,
        spec.model,
        spec.training.max_length,
        directory,
        base_model=spec.base_model,
        own_weights_only=spec.optimization.train != "all" and not spec.trains_own_encoder,
        task=spec.task,
        threshold=result.threshold,
    )

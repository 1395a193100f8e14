"""The training loop: AdamW, a registered lr schedule, an unfreezing schedule, regularizers,
evaluation each epoch, and the best epoch kept.

It holds no strategy logic: which weights may train was decided before it starts (requires_grad),
the unfreezing schedule says which groups train at each step, and regularizers add their penalty.
In a process group of several ranks it trains with DistributedDataParallel (distributed.py).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from app.adaptation import distributed
from app.adaptation.callbacks import Callbacks, Cancelled, Paused, Progress
from app.adaptation.checkpoint import Checkpoints, TrainingState
from app.adaptation.data import Batch, Batches, LabeledTexts, token_batches
from app.adaptation.distributed import Agreement, World
from app.adaptation.features import FeatureBatches, reduce_all
from app.adaptation.frozen_cache import FrozenBottom, frozen_below, frozen_bottom
from app.adaptation.groups import LayerGroup, layer_groups
from app.adaptation.inference import predict_proba
from app.adaptation.loss_curve import LossCurve
from app.adaptation.model import TextClassifier
from app.adaptation.multitask import MAIN, MultiTaskBatches, SampledTask
from app.adaptation.objectives import Objective, StepInputs
from app.adaptation.optim import build_optimizer, group_learning_rate
from app.adaptation.precision import autocast, resolve
from app.adaptation.regularizers import Regularizer
from app.adaptation.schedules import SCHEDULES
from app.adaptation.tasks import Task
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec import JobSpec


@dataclass
class TrainOutcome:
    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    loss_curve: list[dict[str, Any]] = field(default_factory=list)  # {"step", "loss"}: see LossCurve
    steps: int = 0
    stopped_early: bool = False
    features_cached: bool = False
    resumed_from_step: int | None = None
    task_steps: dict[str, int] = field(default_factory=dict)  # steps each task trained (multi-task runs)


def evaluate(
    model: TextClassifier, tokenizer: PreTrainedTokenizerBase, data: LabeledTexts, task: Task, max_length: int
) -> dict[str, Any]:
    probabilities = predict_proba(model, tokenizer, data.texts, max_length, multi_label=task.multi_label)
    return task.report(data.labels, probabilities)


class Trainer:
    def __init__(
        self,
        model: TextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        task: Task,
        spec: JobSpec,
        callbacks: Callbacks,
        progress_interval: float = 1.0,
        regularizers: list[Regularizer] | None = None,
        objectives: list[Objective] | None = None,
        sampled: list[SampledTask] | None = None,
        stage: str = "train",
        world: World | None = None,
    ) -> None:
        self.model, self.tokenizer, self.task, self.spec = model, tokenizer, task, spec
        self.world = world or distributed.current_world()
        self.callbacks, self.progress_interval = distributed.main_only(callbacks, self.world), progress_interval
        self.regularizers = regularizers or []
        self.objectives = objectives or []  # extra loss terms of every main-task step
        self.sampled = {task.name: task for task in sampled or []}  # auxiliary tasks with data of their own
        self.stage = stage  # what progress reports call this run
        self.main_weight = math.prod(objective.main_weight for objective in self.objectives)
        self.device = next(model.parameters()).device
        self.dtype = resolve(spec.training.precision, self.device)
        self.groups = layer_groups(model, model.num_layers)
        self.touched: set[str] = set()  # every parameter that has been trainable so far
        self.best_state: dict[str, torch.Tensor] = {}  # touched weights (and buffers) at the best epoch
        self.phase: frozenset[str] | None = None
        self.frozen: FrozenBottom | None = None  # groups frozen under the trainable ones (unfreezing schedules)
        self._stop_requested = self._pause_requested = False  # what the callbacks asked at the last report
        self.agreement = Agreement(self.world, self.device)
        self.data_parallel: torch.nn.Module | None = None  # the DDP wrapper, while a distributed run trains
        self.seconds_before_resume = 0.0  # training time of the attempts before this one

    def fit(
        self, train: LabeledTexts, validation: LabeledTexts | None, checkpoints: Checkpoints | None = None
    ) -> TrainOutcome:
        cfg = self.spec.training
        outcome = TrainOutcome(best_epoch=0, best_metrics={})
        train_batches, validation_batches = self._batches(train, validation, outcome)
        main_batches = train_batches.main if isinstance(train_batches, MultiTaskBatches) else train_batches
        self.frozen = frozen_bottom(self.model, self.spec, self.regularizers, main_batches, self.dtype, self.callbacks)
        per_epoch = distributed.steps_per_epoch(len(train_batches), self.world)  # this rank's
        total_steps = per_epoch * cfg.epochs
        self._announce_world(len(train_batches), per_epoch)
        optimizer = build_optimizer(self.model, self.groups, self.spec)
        schedule, options = SCHEDULES.get(self.spec.optimization.lr_schedule.name), self.spec.optimization.lr_schedule
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step, total_steps, options))
        rng = random.Random(cfg.seed)
        curve = LossCurve(total_steps)
        self._started = self._last_report = time.monotonic()
        first_epoch, skip = 1, 0
        saved = None
        if checkpoints is not None:
            # Rank 0 alone writes checkpoints, and after a pause it may still be writing the last one
            # when another rank starts the next run: no rank reads until every rank is here.
            distributed.wait_for_every_rank(self.world)
            saved = checkpoints.load()
        if saved is not None:
            first_epoch, skip = self._restore(saved, optimizer, scheduler, rng, outcome)
        for epoch in range(first_epoch, cfg.epochs + 1):
            self._train_mode()
            epoch_rng_state = rng.getstate()
            loss_sum, loss_steps = torch.zeros((), device=self.device), 0
            order = distributed.shard(train_batches.training_order(rng), self.world, per_epoch)
            for done, batch in enumerate(islice(order, skip, None), start=skip + 1):
                position = Position(epoch, outcome.steps, per_epoch, total_steps)
                self._enter_phase(position, outcome)
                self._follow_frozen_bottom(position)
                distributed.seed_step(cfg.seed, outcome.steps, self.world)
                loss = self._step(batch, optimizer, scheduler, outcome.steps)
                outcome.task_steps[batch.task or MAIN] = outcome.task_steps.get(batch.task or MAIN, 0) + 1
                outcome.steps += 1
                if (point := curve.add(outcome.steps, loss)) is not None:
                    outcome.loss_curve.append(point)
                if loss is not None:  # the progress loss is the main task's
                    loss_sum += loss
                    loss_steps += 1
                # An epoch's last step is always reported, so the last report is the job's end.
                if done == per_epoch or time.monotonic() - self._last_report >= self.progress_interval:
                    mean_loss = (loss_sum / loss_steps).item() if loss_steps else None
                    loss_sum, loss_steps = torch.zeros((), device=self.device), 0
                    self._report(epoch, outcome.steps, total_steps, mean_loss, scheduler.get_last_lr()[-1])
                stop, pause = self.agreement.decide(outcome.steps, self._stop_requested, self._pause_requested)
                if stop:
                    raise Cancelled(f"stopped at step {outcome.steps} of {total_steps}")
                if checkpoints is None or done == per_epoch:
                    continue  # the epoch's end writes its own checkpoint, after evaluating
                if pause or outcome.steps % checkpoints.every_steps == 0:
                    self._save(checkpoints, outcome.steps, epoch, done, epoch_rng_state, optimizer, scheduler, outcome)
                if pause:
                    raise Paused(f"paused at step {outcome.steps} of {total_steps}")
            skip = 0
            if validation is None:  # nothing to choose by: the last epoch is the one kept
                outcome.best_epoch = epoch
            elif self._evaluate_epoch(epoch, validation_batches, validation.labels, outcome):
                break  # early stopping
            if checkpoints is not None and epoch < cfg.epochs:
                self._save(checkpoints, outcome.steps, epoch + 1, 0, rng.getstate(), optimizer, scheduler, outcome)
        self.data_parallel = None  # its gradient hooks go with it
        if self.frozen is not None:
            self.frozen.release()  # the cache can be large: free it before the caller goes on
        if self.best_state:
            self.model.load_state_dict(self.best_state, strict=False)
        return outcome

    def _evaluate_epoch(self, epoch: int, batches: Batches | FeatureBatches, gold: list, outcome: TrainOutcome) -> bool:
        """Evaluate, keep the epoch if it is the best so far; True when early stopping says stop."""
        cfg = self.spec.training
        # Rank 0 evaluates and every rank takes its metrics: the same best epoch and early stop everywhere.
        metrics = distributed.from_main(self.world, lambda: self._evaluate(batches, gold))
        summary = {"epoch": epoch, "step": outcome.steps, **_summary(metrics)}
        outcome.history.append(summary)
        self.callbacks.on_event(
            "evaluated",
            f"epoch {epoch}: accuracy {metrics['accuracy']:.4f}, macro_f1 {metrics['macro_f1']:.4f}",
            summary,
        )
        if not outcome.best_metrics or metrics[cfg.eval_metric] > outcome.best_metrics[cfg.eval_metric]:
            outcome.best_epoch, outcome.best_metrics = epoch, metrics
            self.best_state = self._touched_state()
        elif cfg.early_stopping_patience and epoch - outcome.best_epoch >= cfg.early_stopping_patience:
            outcome.stopped_early = True
            self.callbacks.on_event("early_stopped", f"no improvement since epoch {outcome.best_epoch}", {})
            return True
        return False

    # ---- checkpoints ---------------------------------------------------------------------------

    def _save(self, checkpoints: Checkpoints, step: int, *state_of: Any) -> None:
        """Rank 0 writes the checkpoint; every rank of a resumed run reads it (the replicas are equal)."""
        if self.world.is_main:
            checkpoints.save(self._state(*state_of), step)

    def _state(
        self, epoch: int, batches_done: int, epoch_rng_state: tuple, optimizer, scheduler, outcome: TrainOutcome
    ) -> TrainingState:
        return TrainingState(
            epoch=epoch,
            batches_done=batches_done,
            epoch_rng_state=epoch_rng_state,
            torch_rng_state=torch.get_rng_state(),
            cuda_rng_state=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            model=self.model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            best_state=self.best_state,
            bookkeeping={
                "outcome": asdict(outcome),
                "phase": None if self.phase is None else sorted(self.phase),
                "touched": sorted(self.touched),
                "elapsed_seconds": time.monotonic() - self._started,
            },
        )

    def _restore(self, saved: TrainingState, optimizer, scheduler, rng: random.Random, outcome: TrainOutcome):
        """Put the run back where the checkpoint left it; returns (epoch, batches of it already done)."""
        self.model.load_state_dict(saved.model)
        optimizer.load_state_dict(saved.optimizer)
        scheduler.load_state_dict(saved.scheduler)
        rng.setstate(saved.epoch_rng_state)
        torch.set_rng_state(saved.torch_rng_state)
        if saved.cuda_rng_state is not None:
            torch.cuda.set_rng_state(saved.cuda_rng_state, self.device)
        self.best_state = saved.best_state
        book = saved.bookkeeping
        for key, value in book["outcome"].items():
            setattr(outcome, key, value)
        self.touched = set(book["touched"])
        if book["phase"] is not None:
            self.phase = frozenset(book["phase"])
            self._apply_phase(self.phase)
        self.seconds_before_resume = book["elapsed_seconds"]
        self._started -= self.seconds_before_resume
        outcome.resumed_from_step = outcome.steps
        self.callbacks.on_event(
            "resumed",
            f"resumed from the checkpoint at step {outcome.steps} (epoch {saved.epoch}, batch {saved.batches_done})",
            {"step": outcome.steps, "epoch": saved.epoch, "batches_done": saved.batches_done},
        )
        return saved.epoch, saved.batches_done

    # ---- data ----------------------------------------------------------------------------------

    def _batches(self, train: LabeledTexts, validation: LabeledTexts | None, outcome: TrainOutcome):
        cfg = self.spec.training
        targets = self.task.targets(train.labels)
        train_tokens = token_batches(self.tokenizer, train.texts, cfg.max_length, targets, cfg.batch_size)
        validation_tokens = None
        if validation is not None:
            validation_tokens = token_batches(self.tokenizer, validation.texts, cfg.max_length, None, 64)
        if self.sampled:
            return MultiTaskBatches(train_tokens, list(self.sampled.values()), self.spec), validation_tokens
        needs_inputs = [*self.regularizers, *self.objectives]
        if not self.model.encoder_frozen or any(unit.needs_inputs for unit in needs_inputs):
            return train_tokens, validation_tokens
        # A frozen encoder gives the same features every epoch: compute them once.
        outcome.features_cached = True
        self.callbacks.on_event("features_cached", "frozen encoder: features computed once per example", {})
        with autocast(self.device, self.dtype):  # the one forward pass of a feature-extraction job
            train_features = reduce_all(self.model, train_tokens)
            validation_features = None if validation_tokens is None else reduce_all(self.model, validation_tokens)
        return (
            FeatureBatches(train_features, train_tokens.labels, cfg.batch_size),
            None if validation_features is None else FeatureBatches(validation_features, None, 256),
        )

    def _logits(self, batch: Batch) -> torch.Tensor:
        """fp32 logits; the forward pass runs in the job's compute dtype."""
        with autocast(self.device, self.dtype):
            return self.model.head(self._pooled(batch)).float()

    def _pooled(self, batch: Batch) -> torch.Tensor:
        if batch.features is not None:
            return self.model.pooling.combine(batch.features.to(self.device))
        types = None if batch.token_type_ids is None else batch.token_type_ids.to(self.device)
        return self.model.pooled(batch.input_ids.to(self.device), batch.attention_mask.to(self.device), types)

    @torch.inference_mode()
    def _evaluate(self, batches: Batches | FeatureBatches, gold: list) -> dict[str, Any]:
        self.model.eval()
        probabilities = torch.empty(len(gold), len(self.task.labels))
        for batch in batches.by_length():
            probabilities[batch.indices] = self.task.probabilities(self._logits(batch)).cpu()
        self._train_mode()
        self.task.fit_threshold(gold, probabilities)  # multi_label without a configured threshold
        return self.task.report(gold, probabilities)

    # ---- one step ------------------------------------------------------------------------------

    def _train_mode(self) -> None:
        self.model.train()
        if self.frozen is not None:
            self.frozen.apply_modes()  # no dropout in the groups frozen under the trainable ones

    def _train_forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(fp32 logits, pooled vectors) of a main-task training batch, in the job's compute dtype;
        in a distributed run through DDP, whose backward then averages the gradients of the ranks."""
        if not self.world.distributed:
            return self._forward(batch)
        if self.data_parallel is None:  # built at the first step, once the trainable set is settled
            module = distributed.ForwardModule(self.model, self._forward)
            self.data_parallel = distributed.data_parallel(module, self.device)
        return self.data_parallel(batch)

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.dtype):
            cached = self.frozen is not None and self.frozen.caching
            pooled = self.frozen.pooled(batch) if cached else self._pooled(batch)
            return self.model.head(pooled).float(), pooled

    def _step(self, batch: Batch, optimizer, scheduler, step: int) -> torch.Tensor | None:
        """One optimizer step; returns the main task's loss (None for an auxiliary task's step)."""
        if batch.task is not None:
            with autocast(self.device, self.dtype):
                total = self.sampled[batch.task].loss(self.model, batch, step).float()
            self._update(total, optimizer, scheduler)
            return None
        logits, pooled = self._train_forward(batch)
        loss = self.task.loss(logits, batch.labels.to(self.device))
        total = loss * self.main_weight if self.main_weight != 1.0 else loss
        if self.objectives:
            inputs = StepInputs(batch, logits, pooled, step)
            with autocast(self.device, self.dtype):
                for objective in self.objectives:
                    total = total + objective.loss(self.model, inputs).float()
        for regularizer in self.regularizers:
            ids = None if batch.input_ids is None else batch.input_ids.to(self.device)
            mask = None if batch.attention_mask is None else batch.attention_mask.to(self.device)
            with autocast(self.device, self.dtype):
                total = total + regularizer.penalty(self.model, ids, mask, logits).float()
        self._update(total, optimizer, scheduler)
        return loss.detach()

    def _update(self, total: torch.Tensor, optimizer, scheduler) -> None:
        total.backward()
        if self.spec.optimization.max_grad_norm is not None:
            trainable = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(trainable, self.spec.optimization.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    # ---- unfreezing ----------------------------------------------------------------------------

    def _enter_phase(self, position: Position, outcome: TrainOutcome) -> None:
        options = self.spec.optimization.unfreezing
        if options.name == "none" and self.phase is not None:
            return  # one phase for the whole run
        if options.name == "none":
            trainable = frozenset(g.name for g in self.groups if self._any_trainable(g))
        else:
            trainable = UNFREEZING.get(options.name)(position, self.model.num_layers, options)
        if trainable == self.phase:
            return
        self.phase = trainable
        self._apply_phase(trainable)
        named = dict(self.model.named_parameters())
        for group in self.groups:
            for name in group.parameter_names:
                if named[name].requires_grad and name not in self.touched:
                    self.touched.add(name)
                    if self.best_state:  # untouched until now: at the best epoch it had this value
                        self.best_state[name] = named[name].detach().clone()
        record = {
            "phase": len(outcome.phases) + 1,
            "epoch": position.epoch,
            "step": position.step,
            "trainable_groups": [g.name for g in self.groups if g.name in trainable],
            "learning_rates": {g.name: group_learning_rate(self.spec, g) for g in self.groups if g.name in trainable},
        }
        outcome.phases.append(record)
        self.callbacks.on_event(
            "phase", f"phase {record['phase']}: training {', '.join(record['trainable_groups'])}", record
        )

    def _follow_frozen_bottom(self, position: Position) -> None:
        """Keep the frozen bottom (eval mode, cached output) in step with the phase; after a resume
        this rebuilds the cache the checkpoint did not hold."""
        if self.frozen is None or self.phase is None:
            return
        below = frozen_below(self.model.num_layers, self.phase)
        if below != self.frozen.below:
            self.frozen.move(below, self._stretch(position, below), position.steps_per_epoch)

    def _stretch(self, position: Position, below: int) -> int:
        """How many steps of the run, `position`'s included, keep `below` groups frozen under the
        trainable ones. Schedules are pure functions of the position, so the whole stretch is known
        now, and a run resumed inside it decides as the unbroken run did."""
        options = self.spec.optimization.unfreezing
        schedule, n = UNFREEZING.get(options.name), self.model.num_layers

        def below_at(step: int) -> int:
            at = Position(step // position.steps_per_epoch + 1, step, position.steps_per_epoch, position.total_steps)
            return frozen_below(n, schedule(at, n, options))

        first = last = position.step
        while first > 0 and below_at(first - 1) == below:
            first -= 1
        while last + 1 < position.total_steps and below_at(last + 1) == below:
            last += 1
        return last - first + 1

    def _apply_phase(self, trainable: frozenset[str]) -> None:
        if self.spec.optimization.unfreezing.name == "none":
            return  # the strategy decided once, before training
        named = dict(self.model.named_parameters())
        for group in self.groups:
            for name in group.parameter_names:
                named[name].requires_grad_(group.name in trainable)

    def _any_trainable(self, group: LayerGroup) -> bool:
        named = dict(self.model.named_parameters())
        return any(named[n].requires_grad for n in group.parameter_names)

    def _touched_state(self) -> dict[str, torch.Tensor]:
        # Untouched weights never changed, so the touched ones (and buffers) fix the best epoch.
        params = dict(self.model.named_parameters())
        return {
            key: value.detach().clone()
            for key, value in self.model.state_dict().items()
            if key not in params or key in self.touched
        }

    def _report(self, epoch: int, step: int, total: int, loss: float | None, lr: float | None) -> None:
        self._last_report = time.monotonic()
        elapsed = self._last_report - self._started
        self.callbacks.on_progress(
            Progress(self.stage, epoch, self.spec.training.epochs, step, total, elapsed, loss, lr)
        )
        # Acted on by the caller, at once in one process; at the ranks' next agreement in several.
        self._stop_requested = self.callbacks.should_stop()
        self._pause_requested = self.callbacks.should_pause()

    def _announce_world(self, batches: int, per_epoch: int) -> None:
        if not self.world.distributed:
            return
        size, batch_size = self.world.size, self.spec.training.batch_size
        left = distributed.left_out(batches, self.world)
        data = {
            "world_size": size,
            "backend": self.world.backend,
            "batch_size_per_process": batch_size,
            "effective_batch_size": size * batch_size,
            "steps_per_epoch": per_epoch,
            "batches_left_out_per_epoch": left,
        }
        self.callbacks.on_event(
            "distributed",
            f"{size} processes ({self.world.backend}), batch {batch_size} each, {size * batch_size} per step; "
            f"{per_epoch} steps per epoch ({left} of {batches} batches left out each epoch)",
            data,
        )


def _summary(metrics: dict[str, Any]) -> dict[str, float]:
    keys = ("accuracy", "macro_f1", "micro_f1", "threshold")
    return {key: round(metrics[key], 6) for key in keys if metrics.get(key) is not None}

"""The training loop: AdamW over the layer groups, a registered lr schedule, evaluation each epoch,
early stopping, and the best epoch kept.

It holds no strategy logic. What a step trains is its `StepLoss` (classification.py: the task with
its objectives, regularizers and sampled auxiliary tasks; masked_lm.py: a masked-LM stage);
everything else a run may do is a hook (hooks.py) called at fixed points of the loop: the
unfreezing schedule's phases, the feature caches and checkpoints. In a process group of several
ranks the step's forward pass runs through DistributedDataParallel (distributed.py); the loop keeps
the ranks in step.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any, Protocol

import torch

from app.adaptation import distributed
from app.adaptation.callbacks import Callbacks, Cancelled, Progress
from app.adaptation.checkpoint import TrainingState
from app.adaptation.data import MAIN_TASK, Batch
from app.adaptation.distributed import Agreement, World
from app.adaptation.groups import layer_groups
from app.adaptation.hooks import Hook
from app.adaptation.loss_curve import LossCurve
from app.adaptation.optim import build_optimizer
from app.adaptation.schedules import SCHEDULES
from app.adaptation.unfreezing import Position
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


class StepLoss(Protocol):
    """What a run trains: its batches, the loss of one batch, and its validation metrics."""

    def batches(self, train: Any, validation: Any | None) -> tuple[Any, Any | None]:
        """(training batches, validation batches) of the run's data; each has `training_order(rng)`,
        `by_length()` and a length in batches."""
        ...

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the loss to minimise, the main task's loss to report; None for another task's step)."""
        ...

    def evaluate(self, batches: Any, gold: list) -> dict[str, Any]: ...


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        step_loss: StepLoss,
        spec: JobSpec,
        callbacks: Callbacks,
        progress_interval: float = 1.0,
        hooks: list[Hook] | None = None,
        stage: str = "train",
        world: World | None = None,
    ) -> None:
        self.model, self.step_loss, self.spec = model, step_loss, spec
        self.world = world or distributed.current_world()
        self.callbacks, self.progress_interval = distributed.main_only(callbacks, self.world), progress_interval
        # A step loss that must act at those points too (DDP's wrapper goes at the end) is a hook as well.
        self.hooks = [h for h in (step_loss, *(hooks or [])) if isinstance(h, Hook)]
        self.stage = stage  # what progress reports call this run
        self.device = next(model.parameters()).device
        self.groups = layer_groups(model, model.num_layers)
        self.touched: set[str] = set()  # every parameter that has been trainable so far
        self.best_state: dict[str, torch.Tensor] = {}  # touched weights (and buffers) at the best epoch
        self.outcome = TrainOutcome(best_epoch=0, best_metrics={})
        self.agreement = Agreement(self.world, self.device)
        self.seconds_before_resume = 0.0  # training time of the attempts before this one
        self.train_batches: Any = None
        self.validation_batches: Any = None
        self.first_epoch, self.skip = 1, 0  # where the run starts: a checkpoint may move it on
        self._stop_requested = self._pause_requested = False  # what the callbacks asked at the last report

    def fit(
        self, train: Any, validation: Any | None = None, gold: list | None = None, last_epoch: int | None = None
    ) -> TrainOutcome:
        """Train on `train`, evaluating on `validation` (whose labels are `gold`) after each epoch;
        without validation the last epoch is kept. With `last_epoch` the run follows the schedule of
        all `training.epochs` and stops after that one (a refit, refit.py)."""
        cfg, outcome = self.spec.training, self.outcome
        self.train_batches, self.validation_batches = self.step_loss.batches(train, validation)
        self.per_epoch = distributed.steps_per_epoch(len(self.train_batches), self.world)  # this rank's
        self.total_steps = self.per_epoch * cfg.epochs
        self._announce_world(len(self.train_batches))
        self.optimizer = build_optimizer(self.model, self.groups, self.spec)
        schedule, options = SCHEDULES.get(self.spec.optimization.lr_schedule.name), self.spec.optimization.lr_schedule
        total = self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: schedule(step, total, options))
        self.rng = random.Random(cfg.seed)
        self._started = self._last_report = time.monotonic()
        self._call("on_fit_start")
        curve = LossCurve(self.total_steps)  # after the hooks: a full-batch fit has fewer steps
        for epoch in range(self.first_epoch, min(cfg.epochs, last_epoch or cfg.epochs) + 1):
            self.model.train()
            self.epoch_rng_state = self.rng.getstate()
            loss_sum, loss_steps = torch.zeros((), device=self.device), 0
            epoch_loss = EpochLoss(self.device)  # the evaluation's training loss: this attempt's steps of the epoch
            order = distributed.shard(self.train_batches.training_order(self.rng), self.world, self.per_epoch)
            for done, batch in enumerate(islice(order, self.skip, None), start=self.skip + 1):
                position = Position(epoch, outcome.steps, self.per_epoch, self.total_steps)
                self._call("on_step_start", position)
                self._touch_trainable()
                distributed.seed_step(cfg.seed, outcome.steps, self.world)
                loss = self._step(batch, outcome.steps)
                task = batch.task or MAIN_TASK
                outcome.task_steps[task] = outcome.task_steps.get(task, 0) + 1
                outcome.steps += 1
                if (point := curve.add(outcome.steps, loss)) is not None:
                    outcome.loss_curve.append(point)
                if loss is not None:  # the progress loss is the main task's
                    loss_sum += loss
                    loss_steps += 1
                    epoch_loss.add(loss)
                # An epoch's last step is always reported, so the last report is the job's end.
                if done == self.per_epoch or time.monotonic() - self._last_report >= self.progress_interval:
                    mean_loss = (loss_sum / loss_steps).item() if loss_steps else None
                    loss_sum, loss_steps = torch.zeros((), device=self.device), 0
                    self._report(epoch, outcome.steps, mean_loss, self.scheduler.get_last_lr()[-1])
                stop, pause = self.agreement.decide(outcome.steps, self._stop_requested, self._pause_requested)
                if stop:
                    raise Cancelled(f"stopped at step {outcome.steps} of {self.total_steps}")
                self._call("on_step_end", position, done, pause)
            self.skip = 0
            if validation is None:  # nothing to choose by: the last epoch is the one kept
                outcome.best_epoch = epoch
            elif self._evaluate_epoch(epoch, gold if gold is not None else validation.labels, epoch_loss.mean()):
                break  # early stopping
            self._call("on_epoch_end", epoch)
        self._call("on_fit_end")
        if self.best_state:
            self.model.load_state_dict(self.best_state, strict=False)
        return outcome

    def _call(self, event: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    def fit_full_batch(self, iterations: int, l2: float) -> None:
        """From now on each epoch is one batch of every example and one step of `iterations` L-BFGS
        iterations (Liu & Nocedal 1989; strong-Wolfe line search) over the trainable parameters, with
        dropout off: L-BFGS needs the same objective at every evaluation. A feature cache calls it
        before the first step, once the batches are the cached features."""
        self.per_epoch, self.total_steps = 1, self.spec.training.epochs
        for module in self.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.LBFGS(
            trainable,
            lr=self.spec.training.learning_rate,
            max_iter=iterations,
            history_size=20,
            line_search_fn="strong_wolfe",
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)
        self.penalized = [p for p in trainable if p.ndim >= 2]  # weight matrices: no biases, no mix scalars
        self.l2 = l2

    def _step(self, batch: Batch, step: int) -> torch.Tensor | None:
        """One optimizer step; returns the main task's loss (None for an auxiliary task's step)."""
        if isinstance(self.optimizer, torch.optim.LBFGS):
            return self._full_batch_step(batch, step)
        total, reported = self.step_loss.loss(batch, step)
        total.backward()
        if self.spec.optimization.max_grad_norm is not None:
            trainable = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(trainable, self.spec.optimization.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return reported

    def _full_batch_step(self, batch: Batch, step: int) -> torch.Tensor | None:
        reported: list[torch.Tensor | None] = []

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            total, main = self.step_loss.loss(batch, step)
            if self.l2:
                total = total + 0.5 * self.l2 * sum(p.pow(2).sum() for p in self.penalized)
            total.backward()
            reported[:] = [main]
            return total

        self.optimizer.step(closure)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return reported[0]

    # ---- the best epoch --------------------------------------------------------------------------

    def _evaluate_epoch(self, epoch: int, gold: list, train_loss: float | None = None) -> bool:
        """Evaluate, keep the epoch if it is the best so far; True when early stopping says stop.
        The `evaluated` event is the epoch's checkpoint record (GET /v1/jobs/{id}/checkpoints)."""
        cfg, outcome = self.spec.training, self.outcome
        # Rank 0 evaluates and every rank takes its metrics: the same best epoch and early stop everywhere.
        metrics = distributed.from_main(self.world, lambda: self.evaluate(gold))
        summary = {"epoch": epoch, "step": outcome.steps, **_summary(metrics)}
        outcome.history.append(summary)
        # The training loss goes in the event only: after a resume mid-epoch it is the mean of this
        # attempt's steps, while the history must equal an unbroken run's.
        loss = {} if train_loss is None else {"train_loss": round(train_loss, 6)}
        self.callbacks.on_event(
            "evaluated",
            f"epoch {epoch}: accuracy {metrics['accuracy']:.4f}, macro_f1 {metrics['macro_f1']:.4f}",
            {**summary, **loss},
        )
        if not outcome.best_metrics or metrics[cfg.eval_metric] > outcome.best_metrics[cfg.eval_metric]:
            outcome.best_epoch, outcome.best_metrics = epoch, metrics
            self.best_state = self._touched_state()
        elif cfg.early_stopping_patience and epoch - outcome.best_epoch >= cfg.early_stopping_patience:
            outcome.stopped_early = True
            self.callbacks.on_event("early_stopped", f"no improvement since epoch {outcome.best_epoch}", {})
            return True
        return False

    def evaluate(self, gold: list) -> dict[str, Any]:
        """The validation metrics of the model as it is now, in eval mode; train mode after."""
        self.model.eval()
        try:
            return self.step_loss.evaluate(self.validation_batches, gold)
        finally:
            self.model.train()

    def _touch_trainable(self) -> None:
        """Count every parameter that trains now as touched. One that starts training only now (an
        unfreezing schedule thawed it) had its current value at the best epoch so far."""
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad and name not in self.touched:
                self.touched.add(name)
                if self.best_state:
                    self.best_state[name] = parameter.detach().clone()

    def _touched_state(self) -> dict[str, torch.Tensor]:
        # Untouched weights never changed, so the touched ones (and buffers) fix the best epoch.
        params = dict(self.model.named_parameters())
        return {
            key: value.detach().clone()
            for key, value in self.model.state_dict().items()
            if key not in params or key in self.touched
        }

    # ---- what a checkpoint holds (checkpoint.py decides when and where) ------------------------------

    def state(self, epoch: int, batches_done: int, epoch_rng_state: tuple) -> TrainingState:
        bookkeeping: dict[str, Any] = {
            "outcome": asdict(self.outcome),
            "touched": sorted(self.touched),
            "elapsed_seconds": time.monotonic() - self._started,
        }
        for hook in self.hooks:
            bookkeeping.update(hook.state())
        return TrainingState(
            epoch=epoch,
            batches_done=batches_done,
            epoch_rng_state=epoch_rng_state,
            torch_rng_state=torch.get_rng_state(),
            cuda_rng_state=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            best_state=self.best_state,
            bookkeeping=bookkeeping,
        )

    def load_state(self, saved: TrainingState) -> None:
        """Put the run back where the checkpoint left it: it goes on at `first_epoch`, after `skip`
        of that epoch's batches."""
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        self.rng.setstate(saved.epoch_rng_state)
        torch.set_rng_state(saved.torch_rng_state)
        if saved.cuda_rng_state is not None:
            torch.cuda.set_rng_state(saved.cuda_rng_state, self.device)
        self.best_state = saved.best_state
        book = saved.bookkeeping
        for key, value in book["outcome"].items():
            setattr(self.outcome, key, value)
        self.touched = set(book["touched"])
        for hook in self.hooks:
            hook.load_state(self, book)
        self.seconds_before_resume = book["elapsed_seconds"]
        self._started -= self.seconds_before_resume
        self.outcome.resumed_from_step = self.outcome.steps
        self.first_epoch, self.skip = saved.epoch, saved.batches_done
        self.callbacks.on_event(
            "resumed",
            f"resumed from the checkpoint at step {self.outcome.steps} "
            f"(epoch {saved.epoch}, batch {saved.batches_done})",
            {"step": self.outcome.steps, "epoch": saved.epoch, "batches_done": saved.batches_done},
        )

    # ---- reports -----------------------------------------------------------------------------------

    def _report(self, epoch: int, step: int, loss: float | None, lr: float | None) -> None:
        self._last_report = time.monotonic()
        elapsed = self._last_report - self._started
        self.callbacks.on_progress(
            Progress(self.stage, epoch, self.spec.training.epochs, step, self.total_steps, elapsed, loss, lr)
        )
        # Acted on by the caller, at once in one process; at the ranks' next agreement in several.
        self._stop_requested = self.callbacks.should_stop()
        self._pause_requested = self.callbacks.should_pause()

    def _announce_world(self, batches: int) -> None:
        if not self.world.distributed:
            return
        size, batch_size = self.world.size, self.spec.training.batch_size
        left = distributed.left_out(batches, self.world)
        data = {
            "world_size": size,
            "backend": self.world.backend,
            "batch_size_per_process": batch_size,
            "effective_batch_size": size * batch_size,
            "steps_per_epoch": self.per_epoch,
            "batches_left_out_per_epoch": left,
        }
        self.callbacks.on_event(
            "distributed",
            f"{size} processes ({self.world.backend}), batch {batch_size} each, {size * batch_size} per step; "
            f"{self.per_epoch} steps per epoch ({left} of {batches} batches left out each epoch)",
            data,
        )


class EpochLoss:
    """The mean main-task loss over an epoch's steps, summed on the device (one sync at the end)."""

    def __init__(self, device: torch.device) -> None:
        self.total, self.steps = torch.zeros((), device=device), 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach()
        self.steps += 1

    def mean(self) -> float | None:
        return (self.total / self.steps).item() if self.steps else None


def _summary(metrics: dict[str, Any]) -> dict[str, float]:
    keys = ("accuracy", "macro_f1", "micro_f1", "threshold")
    return {key: round(metrics[key], 6) for key in keys if metrics.get(key) is not None}

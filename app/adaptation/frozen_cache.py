"""The frozen bottom of an unfreezing schedule (`training.cache_frozen_layers`): the groups below the
lowest trainable one run without dropout, and their output is computed once per example instead of
at every step.

While a schedule trains layer k+1 and up, the embeddings and layers 1..k are frozen. In eval mode
(no dropout) their output for an example is a function of its tokens and of weights that cannot
change until the lowest trainable group moves. So, for such a stretch of the run, layer k's output
is computed once per training example, kept in RAM as fp16 (only the real tokens, back to back),
and at every step fed to layer k+1 in place of running embeddings..layer k again. It is exact:

- The values are what the frozen layers compute at that step (same weights, same compute dtype,
  no dropout), stored at fp16 (11-bit mantissa, finer than the bf16 of autocast; a layer's output
  ends in a LayerNorm, so it is far inside fp16's range). Only the batch they are computed in
  differs, and in a bidirectional encoder padding never reaches real tokens (attention masks it),
  so a real token's vector does not depend on its batch.
- The padded positions of a batch get zeros instead of the vectors of pad tokens. The layers above
  mask them as keys, and the poolings that may use this path (mean, max, cls) read only real
  tokens of the last layer; scalar_mix, which mixes every layer's output, does not use it.
- The cached rows do not require grad, so backward stops at layer k+1: nothing below it trains.
- The cache holds one boundary at a time. When the lowest trainable group moves, the layers below
  may have trained since (chain-thaw thaws bottom-up) or the cache holds the wrong layer's output
  (gradual unfreezing thaws top-down), so it is dropped and, where it pays, built again.
- It is built, for the whole training set, at the start of a stretch that lasts more than an epoch
  of steps: a shorter stretch sees no example twice, so computing ahead would cost more than it
  saves. It is built in fixed batches (longest texts first), so a run resumed from a checkpoint
  rebuilds the very same values and goes on as the unbroken run would.

The encoder still runs its embeddings (cheap) and builds its attention mask as always; the frozen
layers in its layer list are swapped, for the forward pass only, for stand-ins that hand the cached
output on. That relies only on the encoder calling its layers in order, each on the previous
layer's output.

`FrozenLayers` is the trainer hook that keeps the frozen bottom in step with the schedule.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from app.adaptation.architectures import encoder_inputs
from app.adaptation.callbacks import Callbacks
from app.adaptation.data import Batch, Batches
from app.adaptation.group_names import EMBEDDINGS, layer_name
from app.adaptation.groups import layer_prefix
from app.adaptation.hooks import Hook
from app.adaptation.model import TextClassifier
from app.adaptation.multitask import MultiTaskBatches
from app.adaptation.precision import autocast, resolve
from app.adaptation.regularizers import Regularizer
from app.adaptation.unfreezing import UNFREEZING, Position
from app.schemas.spec import JobSpec

if TYPE_CHECKING:
    from app.adaptation.trainer import Trainer

EVENT = "frozen_cache"
BUILD_BATCH_SIZE = 64


def bottom_up_units(num_layers: int) -> list[str]:
    """The groups an unfreezing schedule can leave frozen under the trainable ones, bottom first."""
    return [EMBEDDINGS, *(layer_name(i) for i in range(num_layers))]


def frozen_below(num_layers: int, trainable: frozenset[str]) -> int:
    """How many of those groups lie below the lowest trainable group (0: the embeddings train)."""
    units = bottom_up_units(num_layers)
    return next((i for i, name in enumerate(units) if name in trainable), len(units))


class LayerOutputs:
    """One layer's output for every training example: fp16 rows of the real tokens, back to back."""

    def __init__(self, lengths: list[int], hidden_size: int) -> None:
        self.lengths = lengths
        self.offsets = [0, *itertools.accumulate(lengths)]
        self.rows = torch.empty(self.offsets[-1], hidden_size, dtype=torch.float16)

    @staticmethod
    def size_in_bytes(lengths: list[int], hidden_size: int) -> int:
        return sum(lengths) * hidden_size * torch.finfo(torch.float16).bits // 8

    def put(self, indices: list[int], hidden: torch.Tensor) -> None:
        values = hidden.detach().to(torch.float16).cpu()  # cast first: half the bytes to copy
        for row, i in enumerate(indices):
            self.rows[self.offsets[i] : self.offsets[i + 1]] = values[row, : self.lengths[i]]

    def padded(self, indices: list[int], width: int) -> torch.Tensor:
        """[batch, width, hidden] fp16; zeros where a text is shorter than the batch."""
        out = torch.zeros(len(indices), width, self.rows.shape[1], dtype=torch.float16)
        for row, i in enumerate(indices):
            out[row, : self.lengths[i]] = self.rows[self.offsets[i] : self.offsets[i + 1]]
        return out


class _StandIn(nn.Module):
    """Takes a frozen layer's place in the encoder's layer list: hands on `output` when set (the
    cached output of the last frozen layer), else its input (a layer below it, whose result the
    cached output replaces anyway). Returns what the real layer returns: a tensor, or a tuple of
    the same length (DeBERTa's layers return their attention weights too, None unless asked), and
    carries the real layer's plain attributes that encoders read (ModernBERT's `attention_type`)."""

    def __init__(self, layer: nn.Module, arity: int | None) -> None:
        super().__init__()
        for key, value in vars(layer).items():
            if not key.startswith("_") and key != "training" and not isinstance(value, nn.Module | torch.Tensor):
                setattr(self, key, value)
        self.arity = arity
        self.output: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        value = hidden_states if self.output is None else self.output
        return value if self.arity is None else (value, *([None] * (self.arity - 1)))


class _Reached(Exception):
    """Stops a forward pass once the last frozen layer has run: the layers above are not needed."""


class FrozenBottom:
    """Keeps the groups below the lowest trainable one in eval mode and, where that is exact and pays,
    their output cached. `below` counts those groups: the embeddings, then encoder layers."""

    def __init__(
        self,
        model: TextClassifier,
        units: list[nn.Module],
        layers: nn.ModuleList,
        train: Batches,
        dtype: torch.dtype,
        callbacks: Callbacks,
        not_cached: str | None = None,
    ) -> None:
        self.model, self.units, self.layers, self.train = model, units, layers, train
        self.dtype, self.callbacks, self.not_cached = dtype, callbacks, not_cached
        self.device = next(model.parameters()).device
        self.below = 0
        self.outputs: LayerOutputs | None = None
        self.output_dtype = torch.float32  # the last frozen layer's output dtype under autocast
        self._stand_ins: list[_StandIn] = []

    @property
    def caching(self) -> bool:
        return self.outputs is not None

    def apply_modes(self) -> None:
        """After model.train(): the frozen bottom runs without dropout; the rest keeps the model's mode."""
        for index, unit in enumerate(self.units):
            unit.train(self.model.training and index >= self.below)

    def move(self, below: int, stretch_steps: int, steps_per_epoch: int) -> None:
        """The lowest trainable group moved: `below` groups under it are frozen for `stretch_steps` steps."""
        if below == self.below:
            return
        self.below, self.outputs = below, None  # a cache of another boundary is of no use now
        self.apply_modes()
        layers = below - 1  # the encoder layers among them
        if layers < 1 or self.not_cached is not None:
            return  # only the embeddings are frozen (cheap to run), or the run cannot cache at all
        frozen = [layer_name(i) for i in range(layers)]
        data: dict[str, Any] = {"cached": False, "frozen_layers": frozen, "stretch_steps": stretch_steps}
        if any(p.requires_grad for unit in self.units[:below] for p in unit.parameters()):
            # Guards against a layout where the groups do not match the modules (nothing known does this).
            self._event(f"not cached: some weights below {layer_name(layers)} train", data)
        elif stretch_steps <= steps_per_epoch:
            self._event(
                f"not cached: {layer_name(layers - 1)} stays the last frozen layer for {stretch_steps} steps, "
                f"no more than an epoch ({steps_per_epoch}), so no example would be reused",
                data,
            )
        else:
            self._build(layers, data)

    def release(self) -> None:
        """End of training: drop the cache, every group back in the model's mode."""
        self.below, self.outputs = 0, None
        self.apply_modes()

    def pooled(self, batch: Batch) -> torch.Tensor:
        """The pooled vectors of a training batch, the frozen bottom read from the cache. Call it
        under the job's autocast, as the plain forward pass."""
        assert self.outputs is not None
        hidden = self.outputs.padded(batch.indices, batch.input_ids.shape[1]).to(self.device, self.output_dtype)
        inputs = _encoder_inputs(self.model.encoder, batch, self.device)
        self._stand_ins[-1].output = hidden
        originals = list(self.layers[: len(self._stand_ins)])
        try:
            for index, stand_in in enumerate(self._stand_ins):
                self.layers[index] = stand_in
            last = self.model.encoder(**inputs).last_hidden_state
        finally:
            for index, layer in enumerate(originals):
                self.layers[index] = layer
            self._stand_ins[-1].output = None
        # Every pooling but scalar_mix (which never gets here) reads the last layer alone.
        return self.model.pooling.combine(self.model.pooling.reduce((last,), inputs["attention_mask"]))

    @torch.no_grad()  # not inference_mode: the rows are inputs of the trainable layers' backward pass
    def _build(self, layers: int, data: dict[str, Any]) -> None:
        started = time.monotonic()
        lengths = [len(ids) for ids in self.train.ids]
        outputs = LayerOutputs(lengths, self.model.encoder.config.hidden_size)
        seen: list[Any] = []

        def stop(module: nn.Module, args: Any, output: Any) -> None:
            seen.append(output)
            raise _Reached

        fixed = Batches(self.train.ids, None, BUILD_BATCH_SIZE, self.train.pad_id, self.train.type_ids)
        handle = self.layers[layers - 1].register_forward_hook(stop)
        try:
            for batch in fixed.by_length():
                with autocast(self.device, self.dtype), contextlib.suppress(_Reached):
                    self.model.encoder(**_encoder_inputs(self.model.encoder, batch, self.device))
                output = seen.pop()
                hidden = output[0] if isinstance(output, tuple) else output
                outputs.put(batch.indices, hidden)
        finally:
            handle.remove()
        self.outputs, self.output_dtype = outputs, hidden.dtype
        arity = len(output) if isinstance(output, tuple) else None
        self._stand_ins = [_StandIn(self.layers[index], arity) for index in range(layers)]
        seconds = time.monotonic() - started
        size = outputs.rows.numel() * outputs.rows.element_size()
        data.update(cached=True, examples=len(lengths), bytes=size, seconds=round(seconds, 3))
        self._event(
            f"cached the output of {layer_name(layers - 1)} for {len(lengths)} examples "
            f"({size / 2**20:.1f} MiB, {seconds:.1f}s): embeddings..{layer_name(layers - 1)} run once per example "
            f"for the next {data['stretch_steps']} steps",
            data,
        )

    def _event(self, message: str, data: dict[str, Any]) -> None:
        self.callbacks.on_event(EVENT, f"frozen layers {message}", data)


def _encoder_inputs(encoder: nn.Module, batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    types = None if batch.token_type_ids is None else batch.token_type_ids.to(device)
    inputs = {"input_ids": batch.input_ids.to(device), "attention_mask": batch.attention_mask.to(device)}
    return {**inputs, **encoder_inputs(encoder, types)}


def frozen_bottom(
    model: TextClassifier,
    spec: JobSpec,
    regularizers: list[Regularizer],
    train: Any,
    dtype: torch.dtype,
    callbacks: Callbacks,
) -> FrozenBottom | None:
    """The frozen bottom of this run, or None where nothing is frozen under trainable groups (no
    unfreezing schedule, the option off, or a frozen encoder, whose features are cached already)."""
    cfg = spec.training
    if not cfg.cache_frozen_layers or spec.optimization.unfreezing.name == "none" or not isinstance(train, Batches):
        return None
    encoder = model.encoder
    prefix = layer_prefix(encoder, model.num_layers)  # "encoder.layer." in BERT
    layers = encoder.get_submodule(prefix.rstrip("."))
    base = "".join(f"{part}." for part in prefix.rstrip(".").split(".")[:-2])  # where the embeddings sit
    try:
        embeddings = encoder.get_submodule(f"{base}embeddings")
    except AttributeError:
        callbacks.on_event(EVENT, "frozen layers not cached: the encoder has no embeddings module", {"cached": False})
        return None
    reason = None
    needs_inputs = [type(r).__name__ for r in regularizers if r.needs_inputs]
    if spec.optimization.train != "all":
        reason = f"optimization.train {spec.optimization.train!r} does not freeze whole layers"
    elif spec.model.pooling == "scalar_mix":
        reason = "pooling scalar_mix mixes the output of every layer, frozen ones included"
    elif needs_inputs:
        reason = f"regularizer {needs_inputs[0]} reads the batch's tokens"
    else:
        size = LayerOutputs.size_in_bytes([len(ids) for ids in train.ids], encoder.config.hidden_size)
        if size > cfg.frozen_cache_mb * 2**20:
            reason = f"the cache would take {size / 2**20:.1f} MiB, over frozen_cache_mb ({cfg.frozen_cache_mb})"
    if reason is not None:
        message = f"frozen layers not cached: {reason}; they run at every step"
        callbacks.on_event(EVENT, message, {"cached": False, "reason": reason})
    units = [embeddings, *layers]
    return FrozenBottom(model, units, layers, train, dtype, callbacks, reason)


class FrozenLayers(Hook):
    """Keeps the frozen bottom (eval mode, cached output) in step with the unfreezing schedule; after a
    resume this rebuilds the cache the checkpoint did not hold."""

    def __init__(self, regularizers: list[Regularizer]) -> None:
        self.regularizers = regularizers
        self.frozen: FrozenBottom | None = None

    @property
    def caching(self) -> bool:
        return self.frozen is not None and self.frozen.caching

    def on_fit_start(self, trainer: Trainer) -> None:
        train = trainer.train_batches
        main = train.main if isinstance(train, MultiTaskBatches) else train
        dtype = resolve(trainer.spec.training.precision, trainer.device)
        self.frozen = frozen_bottom(trainer.model, trainer.spec, self.regularizers, main, dtype, trainer.callbacks)

    def on_step_start(self, trainer: Trainer, position: Position) -> None:
        if self.frozen is None:
            return
        below = frozen_below(trainer.model.num_layers, self._trainable_at(trainer, position))
        if below != self.frozen.below:
            self.frozen.move(below, self._stretch(trainer, position, below), position.steps_per_epoch)
        self.frozen.apply_modes()  # the frozen bottom runs without dropout, whatever model.train() said

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.frozen is not None:
            self.frozen.release()  # the cache can be large: free it before the caller goes on

    def pooled(self, batch: Batch) -> torch.Tensor:
        assert self.frozen is not None
        return self.frozen.pooled(batch)

    @staticmethod
    def _trainable_at(trainer: Trainer, position: Position) -> frozenset[str]:
        options = trainer.spec.optimization.unfreezing
        return UNFREEZING.get(options.name)(position, trainer.model.num_layers, options)

    def _stretch(self, trainer: Trainer, position: Position, below: int) -> int:
        """How many steps of the run, `position`'s included, keep `below` groups frozen under the
        trainable ones. Schedules are pure functions of the position, so the whole stretch is known
        now, and a run resumed inside it decides as the unbroken run did."""
        n = trainer.model.num_layers

        def below_at(step: int) -> int:
            at = Position(step // position.steps_per_epoch + 1, step, position.steps_per_epoch, position.total_steps)
            return frozen_below(n, self._trainable_at(trainer, at))

        first = last = position.step
        while first > 0 and below_at(first - 1) == below:
            first -= 1
        while last + 1 < position.total_steps and below_at(last + 1) == below:
            last += 1
        return last - first + 1

"""Cached frozen features: with the encoder frozen, run it once per example and train on the result.

The pooling's `reduce` output (one vector per layer for scalar_mix, one for the others) is computed
once per example; every epoch then costs only the head. Batches of cached features look like token
batches to the trainer (`FeatureCache`, a trainer hook, swaps them in).

The features of a job's examples (its training and validation rows together) are computed in one
canonical order (by length, then token ids) that depends on the set of examples alone, not on how a
seed split them, and kept under a key of everything they depend on: the frozen encoder's weights,
the pooling, the compute dtype, every example's tokens. So the refit after the choosing run, and
the other seeds and recipes of an experiment on the same rows, read them instead of running the
encoder again, and a read gives the very tensor a computation would (`FeatureStore`: in memory for
this process, and in `Resources.feature_cache`, a folder, across jobs and processes).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

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


def examples(batches: Batches) -> list[tuple[tuple[int, ...], tuple[int, ...] | None]]:
    """Each example's (token ids, segment ids)."""
    types = batches.type_ids
    return [(tuple(ids), None if types is None else tuple(types[i])) for i, ids in enumerate(batches.ids)]


def weights_digest(module: torch.nn.Module) -> str:
    """The sha256 of a module's every parameter and buffer, by name: two encoders share features
    exactly when they share this."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(data.dtype).encode() + str(tuple(data.shape)).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureStore:
    """Features by key: the most recent in this process's memory, up to `memory_bytes` (a worker
    process lives on after its job), and every one in `directory` when given (a folder per tenant:
    the features are the tenant's text, in another form)."""

    def __init__(self, memory_bytes: int = 1 << 30) -> None:
        self.memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.memory_bytes = memory_bytes

    def get(self, key: str, directory: Path | None) -> torch.Tensor | None:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        path = None if directory is None else directory / f"{key}.safetensors"
        if path is None or not path.is_file():
            return None
        features = load_file(str(path))["features"]
        self._remember(key, features)
        return features

    def put(self, key: str, features: torch.Tensor, directory: Path | None) -> None:
        self._remember(key, features)
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            partial = directory / f".{key}.partial"
            save_file({"features": features.contiguous()}, str(partial))
            partial.replace(directory / f"{key}.safetensors")  # whole or absent

    def _remember(self, key: str, features: torch.Tensor) -> None:
        if features.numel() * features.element_size() > self.memory_bytes:
            return  # larger than the whole budget: the folder (if any) keeps it
        self.memory[key] = features
        while sum(f.numel() * f.element_size() for f in self.memory.values()) > self.memory_bytes:
            self.memory.popitem(last=False)  # the oldest first


FEATURES = FeatureStore()
FEATURE_BATCH = 64  # the batch the features are computed in, whatever the job's: part of what they are
LBFGS_ITERATIONS = 10  # per epoch of a full-batch head fit (optimization.head_fit "lbfgs")
L2_PER_EXAMPLE = 1.0  # its L2 penalty weighs as one example's loss: scikit-learn's C = 1


def shared_features(
    model: TextClassifier, sets: list[Batches], dtype: torch.dtype | None, directory: Path | None
) -> tuple[list[torch.Tensor], bool]:
    """The features of every example of `sets`, one tensor per set in its order, and whether they
    were read (True) or computed now. Computed over the examples' union in canonical order."""
    rows = [example for batches in sets for example in examples(batches)]
    union = sorted(set(rows), key=lambda e: (len(e[0]), e[0], e[1] or ()))
    device = next(model.parameters()).device.type
    key_parts = [weights_digest(model.encoder), type(model.pooling).__name__, str(model.num_layers), str(dtype), device]
    digest = hashlib.sha256("|".join(key_parts).encode())
    for ids, types in union:
        digest.update(repr((ids, types)).encode())
    key = digest.hexdigest()
    features = FEATURES.get(key, directory)
    read = features is not None and len(features) == len(union)
    if not read:
        types = None if all(e[1] is None for e in union) else [list(e[1] or ()) for e in union]
        canonical = Batches([list(e[0]) for e in union], None, FEATURE_BATCH, sets[0].pad_id, types)
        features = reduce_all(model, canonical)
        FEATURES.put(key, features, directory)
    position = {example: index for index, example in enumerate(union)}
    return [features[[position[e] for e in examples(batches)]] for batches in sets], read


class FeatureCache(Hook):
    """A frozen encoder gives the same features every epoch: compute them once, before the first
    step (or read them: `shared_features`), and train the head on them. Not where a step reads the
    tokens (`needs_inputs`: a regularizer, objective or auxiliary task runs the encoder itself)."""

    def __init__(self, needs_inputs: bool, directory: Path | None = None) -> None:
        self.needs_inputs, self.directory = needs_inputs, directory

    def on_fit_start(self, trainer: Trainer) -> None:
        model, train = trainer.model, trainer.train_batches
        if not isinstance(model, TextClassifier) or not model.encoder_frozen or self.needs_inputs:
            return
        if not isinstance(train, Batches):
            return  # multi-task batches: the auxiliary tasks read tokens
        trainer.outcome.features_cached = True
        validation = trainer.validation_batches
        sets = [train] if not isinstance(validation, Batches) else [train, validation]
        dtype = resolve(trainer.spec.training.precision, trainer.device)
        with autocast(trainer.device, dtype):
            features, read = shared_features(model, sets, dtype, self.directory)
        how = "read from the feature cache" if read else "computed once per example"
        trainer.callbacks.on_event("features_cached", f"frozen encoder: features {how}", {"read": read})
        full_batch = trainer.spec.optimization.head_fit == "lbfgs" and not trainer.world.distributed
        size = len(features[0]) if full_batch else trainer.spec.training.batch_size
        trainer.train_batches = FeatureBatches(features[0], train.labels, size)
        if len(features) > 1:
            trainer.validation_batches = FeatureBatches(features[1], None, 256)
        if full_batch:
            for parameter in model.pooling.scale_parameters():
                parameter.requires_grad_(False)
            trainer.fit_full_batch(LBFGS_ITERATIONS, l2=L2_PER_EXAMPLE / len(features[0]))

"""What serving keeps loaded: deployments of one encoder each, with one or more models on it.

A model that trained all its weights is a deployment of its own. Models that trained only their own
weights (head_only, adapters, lora) attach to the deployment of their base model: the base encoder is
resident once, each model adds its head, pooling and the small modules of `routed.py`, and one
forward pass can serve rows of several of them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from app.adaptation.architectures import encoder_inputs, of_encoder
from app.adaptation.artifact import WEIGHTS, load_classifier, read_card
from app.adaptation.data import Text
from app.adaptation.heads import HEADS
from app.adaptation.model import load_pretrained_encoder
from app.adaptation.pooling import POOLINGS
from app.schemas.spec import ModelConfig
from app.serving.errors import Unloaded
from app.serving.predictions import format_predictions
from app.serving.routed import LowRankUpdate, Routed, Routing, bottleneck_from

ENCODER = "encoder."
ROUTED_KINDS = {"own": "own", "low_rank": "low_rank", "adapter": "adapters"}
Row = tuple[str, list[int], list[int] | None, int, int]  # model key, token ids, segment ids, request, index


class NotShareable(ValueError):
    """The model's own weights change more of its base than adapters, LoRA and a head."""


@dataclass
class Member:
    """One trained model as served: its head and pooling, and how to read its outputs."""

    key: str
    pooling: nn.Module
    head: nn.Module
    labels: list[str]
    max_length: int
    multi_label: bool
    threshold: float | None
    nbytes: int


@dataclass(frozen=True)
class ServingOptions:
    quantize: str = "none"  # "int8": dynamic int8 quantization of the encoder's linear layers
    precision: str = "fp32"  # "bf16": autocast for the forward pass
    backend: str = "torch"  # "onnx": models with all their weights run in ONNX Runtime (onnx_runtime.py)
    threads: int = 0  # intra-op threads of an ONNX Runtime session; 0: every core the process may use


class Deployment:
    """An encoder with the models that run on it; `predict` serves a batch of their requests."""

    def __init__(self, encoder: nn.Module, tokenizer: PreTrainedTokenizerBase, options: ServingOptions) -> None:
        encoder.eval()
        if options.quantize == "int8":
            with warnings.catch_warnings():  # torch.ao quantization is deprecated for torchao, still works
                warnings.simplefilter("ignore", UserWarning)
                encoder = torch.ao.quantization.quantize_dynamic(encoder, {nn.Linear}, dtype=torch.qint8)
        self.encoder, self.tokenizer, self.options = encoder, tokenizer, options
        self.members: dict[str, Member] = {}
        self.routing = Routing()
        self.nbytes = module_bytes(encoder)
        self._lock = threading.Lock()  # a forward pass and a change of members never overlap

    # ---- members -------------------------------------------------------------------------------

    def add(self, member: Member, changes: dict[str, dict[str, nn.Module]] | None = None) -> None:
        """Attach a model; `changes` maps a base module path to {"own"|"low_rank"|"adapter": module}."""
        with self._lock:
            for path, parts in (changes or {}).items():
                routed = self._routed(path)
                for kind, module in parts.items():
                    getattr(routed, ROUTED_KINDS[kind])[member.key] = module
            self.members[member.key] = member

    def remove(self, key: str) -> None:
        with self._lock:
            self.members.pop(key, None)
            for module in self.encoder.modules():
                if isinstance(module, Routed):
                    module.detach_model(key)

    def _routed(self, path: str) -> Routed:
        module = self.encoder.get_submodule(path)
        if isinstance(module, Routed):
            return module
        parent, _, child = path.rpartition(".")
        routed = Routed(module, self.routing)
        setattr(self.encoder.get_submodule(parent), child, routed)
        return routed

    # ---- serving -------------------------------------------------------------------------------

    def predict(self, requests: Sequence[tuple[str, Sequence[Text]]], max_batch: int) -> list[list[dict[str, Any]]]:
        """Predictions for each (model key, texts) request, in order."""
        with self._lock:
            results = self._loaded_probabilities(requests, max_batch)
            members = [self.members[key] for key, _ in requests]
        return [
            format_predictions(m.labels, rows, m.multi_label, m.threshold)
            for m, rows in zip(members, results, strict=True)
        ]

    def probabilities(self, requests: Sequence[tuple[str, Sequence[Text]]], max_batch: int) -> list[torch.Tensor]:
        """Probabilities for each (model key, texts) request, in order, columns in the order of that
        model's labels: what an ensemble (ensembles.py) averages over its members."""
        with self._lock:
            return self._loaded_probabilities(requests, max_batch)

    def _loaded_probabilities(
        self, requests: Sequence[tuple[str, Sequence[Text]]], max_batch: int
    ) -> list[torch.Tensor]:
        missing = sorted({key for key, _ in requests if key not in self.members})
        if missing:
            raise Unloaded(f"model {missing[0]!r} was unloaded")
        return self._probabilities(requests, max_batch)

    @torch.inference_mode()
    def _probabilities(self, requests: Sequence[tuple[str, Sequence[Text]]], max_batch: int) -> list[torch.Tensor]:
        """Probabilities for each request. Rows are sorted by model, then by length, and run in
        forward passes of at most `max_batch` rows."""
        rows = encode_rows(self.tokenizer, requests, {key: m.max_length for key, m in self.members.items()})
        out = [torch.empty(len(texts), len(self.members[key].labels)) for key, texts in requests]
        for start in range(0, len(rows), max_batch):
            chunk = rows[start : start + max_batch]
            for (_, _, _, number, index), probabilities in zip(chunk, self._forward(chunk), strict=True):
                out[number][index] = probabilities
        return out

    def _forward(self, rows: list[Row]) -> torch.Tensor:
        ids, mask, types = padded(rows, self.tokenizer.pad_token_id)
        segments, start = [], 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i][0] != rows[start][0]:
                segments.append((rows[start][0], start, i))
                start = i
        self.routing.segments = segments
        extra = encoder_inputs(self.encoder, types)
        bf16 = self.options.precision == "bf16" and self.options.quantize == "none"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True, **extra).hidden_states
            outputs = []
            for key, begin, end in segments:
                member = self.members[key]
                reduced = member.pooling.reduce(tuple(h[begin:end] for h in hidden), mask[begin:end])
                logits = member.head(member.pooling.combine(reduced)).float()
                outputs.append(logits.sigmoid() if member.multi_label else logits.softmax(dim=-1))
        return torch.cat(outputs)


def encode_rows(
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[tuple[str, Sequence[Text]]],
    max_lengths: dict[str, int],
) -> list[Row]:
    """Every text of the requests as a row, sorted by model, then by length (so that a forward
    pass pads little and each model's rows are one slice of it)."""
    rows: list[Row] = []
    for number, (key, texts) in enumerate(requests):
        ids, types = _encode(tokenizer, texts, max_lengths[key])
        for index, (row_ids, row_types) in enumerate(zip(ids, types or [None] * len(ids), strict=True)):
            rows.append((key, row_ids, row_types, number, index))
    rows.sort(key=lambda row: (row[0], len(row[1])))
    return rows


def padded(rows: Sequence[Row], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Token ids, attention mask and (for sentence pairs) segment ids of rows, padded to the longest."""
    width = max(len(row[1]) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if any(r[2] for r in rows) else None
    for i, (_, row_ids, row_types, _, _) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        mask[i, : len(row_ids)] = 1
        if types is not None and row_types:
            types[i, : len(row_types)] = torch.tensor(row_types)
    return ids, mask, types


def _encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[Text], max_length: int
) -> tuple[list[list[int]], list[list[int]] | None]:
    """Token ids (and segment ids of sentence pairs), cut to max_length, unpadded."""
    if texts and isinstance(texts[0], tuple):
        first, second = zip(*texts, strict=True)
        encoded = tokenizer(list(first), list(second), truncation=True, max_length=max_length)
        return encoded["input_ids"], encoded.get("token_type_ids")
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"], None


# ---- loading -----------------------------------------------------------------------------------


def load_private(model_id: str, directory: Path, base_model_path: Path, options: ServingOptions) -> Deployment:
    """A model with all its weights: its own deployment."""
    loaded = load_classifier(directory, base_model_path)
    deployment = Deployment(loaded.model.encoder, loaded.tokenizer, options)
    member = Member(
        model_id,
        loaded.model.pooling.eval(),
        loaded.model.head.eval(),
        loaded.labels,
        loaded.max_length,
        loaded.multi_label,
        loaded.threshold,
        module_bytes(loaded.model.pooling) + module_bytes(loaded.model.head),
    )
    deployment.add(member)
    return deployment


def load_base(base_model_path: Path, options: ServingOptions) -> Deployment:
    encoder = load_pretrained_encoder(base_model_path)
    encoder.pooler = None  # as in TextClassifier: the pretraining pooler is never used
    return Deployment(encoder, AutoTokenizer.from_pretrained(base_model_path), options)


def shares_base(directory: Path) -> bool:
    return read_card(directory)["weights"] == "own"


def read_member(model_id: str, directory: Path, base: nn.Module) -> tuple[Member, dict]:
    """A model that stored only its own weights, as a member and its changes to the base encoder:
    adapters and LoRA updates on its linear layers, and its own copy of any other module whose
    weights it trained (the layer norms that Houlsby adapters train)."""
    hidden, num_layers = base.config.hidden_size, base.config.num_hidden_layers
    card = read_card(directory)
    config = ModelConfig.model_validate(card["model"])
    pooling = POOLINGS.get(config.pooling)(hidden, num_layers)
    head = HEADS.get(config.head)(hidden, len(card["labels"]), config)
    own: dict[str, dict[str, torch.Tensor]] = {"pooling": {}, "head": {}}
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    low_rank: dict[str, dict[str, torch.Tensor]] = {}
    replaced: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in load_file(str(directory / WEIGHTS)).items():
        owner, _, rest = name.partition(".")
        if owner in own:
            own[owner][rest] = tensor
        elif name.startswith(ENCODER) and ".adapter." in name:
            path, _, part = name[len(ENCODER) :].partition(".adapter.")
            adapters.setdefault(path, {})[part] = tensor
        elif name.startswith(ENCODER) and (".lora_A." in name or ".lora_B." in name):
            path, _, part = name[len(ENCODER) :].rpartition(".lora_")
            low_rank.setdefault(path, {})[part[0]] = tensor  # "A" or "B"
        elif name.startswith(ENCODER):
            path, _, part = name[len(ENCODER) :].rpartition(".")
            replaced.setdefault(path, {})[part] = tensor
        else:
            raise NotShareable(f"{directory}: {name} is not an encoder, pooling or head weight")
    pooling.load_state_dict(own["pooling"])
    head.load_state_dict(own["head"])
    changes: dict[str, dict[str, nn.Module]] = {}
    for path, weights in adapters.items():
        changes.setdefault(path, {})["adapter"] = bottleneck_from(weights).eval()
    for path, weights in replaced.items():
        changes.setdefault(path, {})["own"] = own_copy(base, path, weights)
    for path, weights in low_rank.items():
        scale = config.lora.alpha / config.lora.r if config.lora else 1.0
        changes.setdefault(path, {})["low_rank"] = LowRankUpdate(weights["A"], weights["B"], scale).eval()
    unroutable = [path for path in changes if path.endswith(of_encoder(base).unroutable)]
    if unroutable:
        raise NotShareable(f"{directory}: {unroutable[0]} also runs on inputs that are not the batch's rows")
    nbytes = (
        module_bytes(pooling) + module_bytes(head) + sum(module_bytes(m) for c in changes.values() for m in c.values())
    )
    member = Member(
        model_id,
        pooling.eval(),
        head.eval(),
        card["labels"],
        card["max_length"],
        card.get("task") == "multi_label",
        card.get("threshold"),
        nbytes,
    )
    return member, changes


def own_copy(base: nn.Module, path: str, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the base's module at `path` holding the model's own weights (all of them)."""
    module = base.get_submodule(path)
    if isinstance(module, Routed):
        module = module.base
    copy = deepcopy(module)
    try:
        copy.load_state_dict(weights)
    except RuntimeError as error:  # e.g. a quantized base module, or only some of its weights stored
        raise NotShareable(f"{path}: {error}") from None
    return copy.eval()


def module_bytes(module: nn.Module) -> int:
    """Resident bytes of a module's tensors, packed (quantized) weights included."""
    return sum(_tensor_bytes(value) for value in module.state_dict().values())


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, tuple | list):
        return sum(_tensor_bytes(v) for v in value)
    return 0

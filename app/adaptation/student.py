"""A smaller student for distillation (`student_layers`): the base encoder cut to evenly spaced layers."""

from __future__ import annotations

import torch
from torch import nn

from app.adaptation.groups import layer_prefix


def kept_layers(total: int, keep: int) -> list[int]:
    """Evenly spaced layer indices from the bottom layer to the top one: 6 -> 3 keeps 0, 2, 5
    (numpy.linspace rounded half to even, as Python rounds)."""
    if not 1 <= keep <= total:
        raise ValueError(f"student_layers must be from 1 to the base model's {total} layers, not {keep}")
    if keep == 1:
        return [total - 1]
    return [round(i * (total - 1) / (keep - 1)) for i in range(keep)]


def cut_encoder(encoder: nn.Module, keep: int) -> list[int]:
    """Keep `keep` of the encoder's layers, in place (weights as pretrained); returns their indices."""
    total = encoder.config.num_hidden_layers
    indices = kept_layers(total, keep)
    path = layer_prefix(encoder, total).rstrip(".")
    layers = encoder.get_submodule(path)
    kept = nn.ModuleList(layers[i] for i in indices)
    for position, layer in enumerate(kept):
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = position  # caches index layers by position
    parent, _, attribute = path.rpartition(".")
    setattr(encoder.get_submodule(parent) if parent else encoder, attribute, kept)
    encoder.config.num_hidden_layers = keep
    if isinstance(getattr(encoder.config, "layer_types", None), list):  # ModernBERT: each layer's attention span
        encoder.config.layer_types = [encoder.config.layer_types[i] for i in indices]
    return indices


def teacher_start(student: nn.Module, teacher: nn.Module, kept: list[int]) -> tuple[int, list[str]]:
    """Start the student from the teacher's own weights where they fit, in place (DistilBERT, Sanh
    et al. 2019, and PKD, Sun et al. 2019, start the student from the teacher's layers): student
    layer k takes teacher layer kept[k]; the embeddings, pooling and head take the teacher's of the
    same name and shape. Returns how many tensors were copied and the names that kept their own."""
    student_prefix = "encoder." + layer_prefix(student.encoder, len(kept))
    teacher_prefix = "encoder." + layer_prefix(teacher.encoder, teacher.encoder.config.num_hidden_layers)
    source = teacher.state_dict()
    copied, own = 0, []
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            origin = name
            if name.startswith(student_prefix):
                position, rest = name[len(student_prefix) :].split(".", 1)
                origin = f"{teacher_prefix}{kept[int(position)]}.{rest}"
            if origin in source and source[origin].shape == tensor.shape:
                tensor.copy_(source[origin])
                copied += 1
            else:
                own.append(name)
    return copied, own

"""`format=onnx`: the classifier as one ONNX graph, with its tokenizer files and a small card.

    model.onnx        inputs input_ids, attention_mask (and token_type_ids for encoders with
                      segment embeddings), int64 [batch, tokens]; outputs logits and probabilities
                      (softmax, or a sigmoid per label for multi-label: the scores Thaw serves)
    thaw.json         labels, max_length, threshold, the graph's inputs
    tokenizer files   the base model's tokenizer

LoRA is merged into the weights first; adapters stay as the small layers they are. The graph is
traced in eval mode with eager attention (no dropout, no fused kernels whose export varies by
version), batch and token axes dynamic.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from app.adaptation.architectures import encoder_inputs
from app.adaptation.artifact import LoadedClassifier, load_classifier
from app.adaptation.exports.merge import merge_lora
from app.adaptation.model import TextClassifier

OPSET = 17


class Scores(nn.Module):
    """The classifier with its scores as a second output."""

    def __init__(self, model: TextClassifier, multi_label: bool) -> None:
        super().__init__()
        self.model, self.multi_label = model, multi_label

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_ids, attention_mask, token_type_ids)
        return logits, logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)


def export_onnx(directory: Path, base_model_path: Path | None, out: Path) -> None:
    loaded = load_classifier(directory, base_model_path)
    merge_lora(loaded.model.encoder)
    loaded.model.encoder.set_attn_implementation("eager")
    out.mkdir(parents=True, exist_ok=True)
    inputs = sample_inputs(loaded)
    names = list(inputs)
    axes = {name: {0: "batch", 1: "tokens"} for name in names} | {"logits": {0: "batch"}, "probabilities": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            Scores(loaded.model.eval(), loaded.multi_label),
            tuple(inputs.values()),
            str(out / "model.onnx"),
            input_names=names,
            output_names=["logits", "probabilities"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    card = {
        "labels": loaded.labels,
        "max_length": loaded.max_length,
        "task": "multi_label" if loaded.multi_label else "single_label",
        "threshold": loaded.threshold,
        "inputs": names,
    }
    (out / "thaw.json").write_text(json.dumps(card, indent=2))
    loaded.tokenizer.save_pretrained(out)


def sample_inputs(loaded: LoadedClassifier) -> dict[str, torch.Tensor]:
    """Two texts of different lengths, tokenized as serving does: the trace's example inputs."""
    encoded = loaded.tokenizer(
        ["a short text", "a somewhat longer text to pad the first"], padding=True, return_tensors="pt"
    )
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    types = encoded.get("token_type_ids")
    return inputs | encoder_inputs(loaded.model.encoder, None if types is None else torch.zeros_like(types))

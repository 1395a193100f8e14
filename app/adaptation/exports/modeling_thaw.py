"""A Thaw model as a Hugging Face model: `AutoModelForSequenceClassification.from_pretrained(folder,
trust_remote_code=True)` loads it, and its logits are the ones Thaw serves (the calibration
temperature is folded into the head; softmax, or a sigmoid per label for multi-label, gives the
scores of `POST /v1/models/{id}/predict`).

This file is copied into every exported folder and needs torch and transformers only, not Thaw.
The encoder is the base model's own class (AutoModel over this config); on top of it sit what Thaw
adds, as `config.thaw` describes them: bottleneck adapters after chosen linear layers (Houlsby et
al. 2019; LoRA is merged into the weights before export), a pooling and the head.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class Bottleneck(nn.Module):
    def __init__(self, hidden: int, size: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.up = nn.Linear(size, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))


class WithAdapter(nn.Module):
    def __init__(self, inner: nn.Linear, size: int) -> None:
        super().__init__()
        self.inner = inner
        self.adapter = Bottleneck(inner.out_features, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.inner(x))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class Pooling(nn.Module):
    """`cls`, `mean`, `max`, or `scalar_mix` (ELMo's softmax-weighted sum of every layer, mean-pooled)."""

    def __init__(self, name: str, num_layers: int) -> None:
        super().__init__()
        self.name = name
        if name == "scalar_mix":
            self.scalars = nn.Parameter(torch.zeros(num_layers + 1))
            self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        last = hidden_states[-1]
        if self.name == "cls":
            return last[:, 0]
        if self.name == "mean":
            return masked_mean(last, mask)
        if self.name == "max":
            return last.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(last.dtype).min).max(dim=1).values
        means = torch.stack([masked_mean(layer, mask) for layer in hidden_states], dim=1)
        return self.gamma * torch.einsum("l,blh->bh", torch.softmax(self.scalars, dim=0).to(means.dtype), means)


def head(name: str, hidden: int, num_labels: int, head_hidden: int) -> nn.Sequential:
    """`linear` (dropout, linear) or `mlp` (dropout, linear, tanh, dropout, linear); no dropout here."""
    if name == "linear":
        return nn.Sequential(nn.Identity(), nn.Linear(hidden, num_labels))
    return nn.Sequential(
        nn.Identity(), nn.Linear(hidden, head_hidden), nn.Tanh(), nn.Identity(), nn.Linear(head_hidden, num_labels)
    )


class ThawForSequenceClassification(PreTrainedModel):
    config_class = PretrainedConfig
    base_model_prefix = "encoder"

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        thaw = config.thaw
        self.encoder = AutoModel.from_config(config)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # Thaw never uses the pretraining pooler
        adapters = thaw.get("adapters")
        if adapters:
            for path in adapters["modules"]:
                parent_name, _, child = path.rpartition(".")
                parent = self.encoder.get_submodule(parent_name)
                setattr(parent, child, WithAdapter(getattr(parent, child), adapters["size"]))
        self.pooling = Pooling(thaw["pooling"], thaw["num_layers"])
        self.head = head(thaw["head"], config.hidden_size, config.num_labels, thaw["head_hidden"])
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {}
        if token_type_ids is not None and getattr(self.config, "type_vocab_size", 0) >= 2:
            extra["token_type_ids"] = token_type_ids
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **extra)
        logits = self.head(self.pooling(out.hidden_states, attention_mask))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

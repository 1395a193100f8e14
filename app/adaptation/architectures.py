"""Where the parts of each supported encoder family sit, by the `model_type` of its config.

The engine finds an encoder's list of layers by structure (groups.layer_prefix: the module list
with one entry per layer). What structure cannot say is which linear layer in a layer is the
attention block's output projection, which the feed-forward block's, and which project queries,
keys and values: BERT calls them `attention.output.dense`, `output.dense` and
`attention.self.query`, DistilBERT `attention.out_lin`, `ffn.lin2` and `attention.q_lin`,
ModernBERT `attn.Wo`, `mlp.Wo` and one fused `attn.Wqkv`. This table says it once per family;
adapters (Houlsby et al. 2019 place theirs after those two output projections), LoRA's `query` /
`key` / `value` targets and the layer groups read it, and a base model of a type outside it is
refused before any job runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ROLES = ("query", "key", "value")


@dataclass(frozen=True)
class Architecture:
    model_type: str
    attention_output: str  # in a layer: the attention block's output projection
    feed_forward_output: str  # in a layer: the feed-forward block's output projection
    projections: Mapping[str, str]  # query / key / value -> the linear layer that computes it
    # Modules of the encoder, outside its layers, that belong to the embeddings group: position
    # tables and projections that every layer reads (ELECTRA's embedding projection, DeBERTa's
    # and MPNet's relative-position tables).
    embeddings: tuple[str, ...] = ("embeddings",)
    # ELECTRA's embeddings are narrower than its layers; this linear layer widens them.
    embedding_projection: str | None = None
    # Modules that also run on something other than the batch's rows (DeBERTa puts its relative-
    # position table through a layer norm and the attention's query and key projections): serving
    # cannot route their changes row by row, so a model that changes them gets its own encoder.
    unroutable: tuple[str, ...] = ()


def _bert_like(model_type: str, **changes: Any) -> Architecture:
    parts: dict[str, Any] = {
        "attention_output": "attention.output.dense",
        "feed_forward_output": "output.dense",
        "projections": {role: f"attention.self.{role}" for role in ROLES},
    }
    parts.update(changes)
    return Architecture(model_type, **parts)


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(
    {
        a.model_type: a
        for a in (
            _bert_like("bert"),
            _bert_like("roberta"),
            _bert_like("xlm-roberta"),
            _bert_like(
                "electra", embeddings=("embeddings", "embeddings_project"), embedding_projection="embeddings_project"
            ),
            _bert_like(
                "deberta-v2",
                projections={role: f"attention.self.{role}_proj" for role in ROLES},
                embeddings=("embeddings", "encoder.rel_embeddings", "encoder.LayerNorm"),
                unroutable=(
                    "encoder.LayerNorm",
                    *(
                        f"attention.self.{name}"
                        for name in ("query_proj", "key_proj", "pos_key_proj", "pos_query_proj")
                    ),
                ),
            ),
            _bert_like(
                "mpnet",
                attention_output="attention.attn.o",
                projections={role: f"attention.attn.{role[0]}" for role in ROLES},
                embeddings=("embeddings", "encoder.relative_attention_bias"),
            ),
            Architecture(
                "distilbert",
                attention_output="attention.out_lin",
                feed_forward_output="ffn.lin2",
                projections={role: f"attention.{role[0]}_lin" for role in ROLES},
            ),
            # One fused projection computes queries, keys and values: LoRA on any of them adapts all three.
            Architecture(
                "modernbert",
                attention_output="attn.Wo",
                feed_forward_output="mlp.Wo",
                projections=dict.fromkeys(ROLES, "attn.Wqkv"),
            ),
        )
    }
)


class UnsupportedArchitecture(ValueError):
    pass


def supported() -> list[str]:
    return sorted(ARCHITECTURES)


def architecture_of(model_type: str | None) -> Architecture:
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"model_type {model_type!r} is not supported; supported model types: {', '.join(supported())}"
        )
    return ARCHITECTURES[model_type]


def of_encoder(encoder: torch.nn.Module) -> Architecture:
    return architecture_of(getattr(encoder.config, "model_type", None))


def lora_targets(architecture: Architecture, names: list[str]) -> list[str]:
    """LoRA's target modules: `query`, `key` and `value` name the architecture's projections (BERT's
    modules of those very names); any other name is a module name, as peft matches it."""
    targets = [architecture.projections.get(name, name) for name in names]
    return list(dict.fromkeys(targets))


def token_vectors(encoder: torch.nn.Module) -> torch.Tensor:
    """The input embedding of every vocabulary token as the encoder's layers receive it (through
    the embedding projection where there is one): what a tied masked-LM output layer scores against."""
    weight = encoder.get_input_embeddings().weight
    projection = of_encoder(encoder).embedding_projection
    return weight if projection is None else encoder.get_submodule(projection)(weight)


def encoder_inputs(encoder: torch.nn.Module, token_type_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Segment ids go to an encoder only when it has a segment embedding for the second text: BERT
    and ELECTRA do; RoBERTa and XLM-R have one row of it, DeBERTa-v3 none, and DistilBERT, MPNet
    and ModernBERT take no segment ids at all (their tokenizers return none)."""
    if token_type_ids is None or getattr(encoder.config, "type_vocab_size", 0) < 2:
        return {}
    return {"token_type_ids": token_type_ids}

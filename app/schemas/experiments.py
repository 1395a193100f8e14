"""An experiment request: one dataset pair, several recipes or specs, several seeds."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from app.schemas.spec_base import Strict

MAX_RUNS = 60  # variants x seeds: one request must not flood the queue


class Variant(Strict):
    name: str | None = Field(None, max_length=100, description="Its row in the leaderboard; default: the recipe.")
    spec: dict[str, Any] = Field(description="A partial job spec laid over the experiment's `common` part.")


class ExperimentRequest(Strict):
    name: str | None = Field(None, max_length=200)
    data: dict[str, Any] = Field(description="The job spec's `data` block, shared by every run: train, test, ...")
    base_model: str | None = Field(None, description="Shared by every run; default: the job spec's default.")
    common: dict[str, Any] = Field(
        default_factory=dict, description="A partial job spec every run starts from (epochs, fields, ...)."
    )
    recipes: list[str] = Field(default_factory=list, description="One variant per recipe, as the recipe sets it.")
    specs: list[Variant] = Field(default_factory=list, description="Variants written as partial job specs.")
    seeds: int | list[int] = Field(
        3,
        validate_default=True,
        description="How many seeds each variant runs with (0, 1, ...), or the seeds themselves.",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: int | list[int]) -> list[int]:
        seeds = list(range(value)) if isinstance(value, int) else value
        if not 1 <= len(seeds) <= 10:
            raise ValueError("between 1 and 10 seeds")
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError("seeds must be distinct and not negative")
        return seeds

    @model_validator(mode="after")
    def _variants(self) -> ExperimentRequest:
        count = len(self.recipes) + len(self.specs)
        if count == 0:
            raise ValueError("name at least one of `recipes` or `specs`")
        if count * len(self.seed_list) > MAX_RUNS:
            raise ValueError(f"{count} variants x {len(self.seed_list)} seeds is over the limit of {MAX_RUNS} jobs")
        names = self.variant_names()
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must differ (got {', '.join(names)}); name the specs")
        return self

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else self.seeds

    def variant_names(self) -> list[str]:
        return [*self.recipes, *(v.name or v.spec.get("recipe") or f"spec {i}" for i, v in enumerate(self.specs))]

    def variants(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, where in the request, partial spec) of each variant."""
        partials = [(f"recipes.{i}", {"recipe": r}) for i, r in enumerate(self.recipes)]
        partials += [(f"specs.{i}.spec", v.spec) for i, v in enumerate(self.specs)]
        return [(name, where, spec) for name, (where, spec) in zip(self.variant_names(), partials, strict=True)]

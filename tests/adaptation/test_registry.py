"""The job spec's choices and the engine's registries name exactly the same units."""

import typing

import pytest

from app.adaptation.heads import HEADS
from app.adaptation.objectives import OBJECTIVES
from app.adaptation.perturbations import PERTURBATIONS
from app.adaptation.pooling import POOLINGS
from app.adaptation.registry import Registry
from app.adaptation.regularizers import REGULARIZERS
from app.adaptation.sampling import SAMPLINGS
from app.adaptation.schedules import SCHEDULES
from app.adaptation.slicing import RULES
from app.adaptation.strategies import STRATEGIES
from app.adaptation.unfreezing import UNFREEZING
from app.schemas.signal import RULES as SLICE_RULES
from app.schemas.signal import AuxiliaryTask, Consistency
from app.schemas.spec import JobSpec, ModelConfig, OptimizationConfig


def spec_names(model: type, field: str) -> list[str]:
    """The names a spec field accepts: a Literal's values, or a discriminated union's `name` tags."""
    annotation = model.model_fields[field].annotation
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation)
    if all(isinstance(m, str) for m in members):
        return sorted(members)
    return sorted(typing.get_args(m.model_fields["name"].annotation)[0] for m in members)


@pytest.mark.parametrize(
    ("registry", "model", "field"),
    [
        (POOLINGS, ModelConfig, "pooling"),
        (HEADS, ModelConfig, "head"),
        (SCHEDULES, OptimizationConfig, "lr_schedule"),
        (STRATEGIES, OptimizationConfig, "train"),
        (UNFREEZING, OptimizationConfig, "unfreezing"),
        (REGULARIZERS, OptimizationConfig, "regularizers"),
        (PERTURBATIONS, Consistency, "perturbation"),
        (SAMPLINGS, JobSpec, "task_sampling"),
    ],
)
def test_spec_names_match_registry(registry: Registry, model: type, field: str):
    assert registry.names() == spec_names(model, field)
    assert len(registry.names()) >= 2


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown pooling 'attention'; known: cls, max, mean, scalar_mix"):
        POOLINGS.get("attention")


def test_registering_a_name_twice_is_an_error():
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(2)


def test_slice_rules_and_objectives_match_the_spec():
    assert RULES.names() == sorted(SLICE_RULES)
    # One objective per job option that adds a loss term at every main step; `masked_lm` is an
    # auxiliary task's objective (a task without data of its own).
    assert OBJECTIVES.names() == ["consistency", "distillation", "masked_lm", "slices"]
    assert {"consistency", "slices", "distillation"} <= set(JobSpec.model_fields)
    assert "masked_lm" in typing.get_args(AuxiliaryTask.model_fields["objective"].annotation)

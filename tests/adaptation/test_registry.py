"""The job spec's choices are built from the engine's registries: every registered unit is a name
the spec accepts, in a module of that name, and a unit with options brings its options model."""

import subprocess
import sys
import typing

import pytest
from pydantic import BaseModel, ValidationError

from app.adaptation.heads import HEADS
from app.adaptation.objectives import OBJECTIVES
from app.adaptation.perturbations import PERTURBATIONS
from app.adaptation.pooling import POOLINGS
from app.adaptation.registry import Registry, unit_modules
from app.adaptation.regularizers import REGULARIZERS
from app.adaptation.sampling import SAMPLINGS
from app.adaptation.schedules import SCHEDULES
from app.adaptation.slicing import RULES
from app.adaptation.strategies import STRATEGIES
from app.adaptation.tasks import TASKS
from app.adaptation.unfreezing import UNFREEZING
from app.schemas.signal import RULES as SLICE_RULES
from app.schemas.signal import AuxiliaryTask, Consistency, SliceSpec
from app.schemas.spec import JobSpec, ModelConfig, OptimizationConfig
from tests.utils.services import ROOT

KINDS = [
    (POOLINGS, ModelConfig, "pooling"),
    (HEADS, ModelConfig, "head"),
    (SCHEDULES, OptimizationConfig, "lr_schedule"),
    (STRATEGIES, OptimizationConfig, "train"),
    (UNFREEZING, OptimizationConfig, "unfreezing"),
    (REGULARIZERS, OptimizationConfig, "regularizers"),
    (PERTURBATIONS, Consistency, "perturbation"),
    (SAMPLINGS, JobSpec, "task_sampling"),
    (TASKS, JobSpec, "task"),
]


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


@pytest.mark.parametrize(("registry", "model", "field"), KINDS, ids=[field for _, _, field in KINDS])
def test_spec_names_are_the_registered_units_each_in_its_own_module(registry: Registry, model: type, field: str):
    assert registry.names() == spec_names(model, field)
    assert registry.names() == sorted(unit_modules(registry.package))  # one module per unit, named as it
    assert len(registry.names()) >= 2
    for name in registry.names():
        assert registry.get(name).__module__ == f"{registry.package}.{name}"


@pytest.mark.parametrize(
    "registry", [SCHEDULES, UNFREEZING, REGULARIZERS, PERTURBATIONS, SAMPLINGS], ids=lambda r: r.kind
)
def test_a_unit_with_options_brings_the_model_the_spec_validates_it_with(registry: Registry):
    for name in registry.names():
        options = registry.options(name)
        assert issubclass(options, BaseModel) and options.__module__ == f"{registry.package}.{name}"
        assert options.model_fields["name"].default == name


def test_the_spec_validates_a_units_own_options_and_names_the_bad_field():
    spec = JobSpec.model_validate(
        {"data": {"train": "d"}, "optimization": {"lr_schedule": {"name": "slanted_triangular", "ratio": 8}}}
    )
    assert type(spec.optimization.lr_schedule) is SCHEDULES.options("slanted_triangular")
    assert spec.optimization.lr_schedule.ratio == 8
    with pytest.raises(ValidationError, match="optimization.lr_schedule.slanted_triangular.ratio"):
        JobSpec.model_validate(
            {"data": {"train": "d"}, "optimization": {"lr_schedule": {"name": "slanted_triangular", "ratio": 0}}}
        )
    with pytest.raises(ValidationError, match="'constant', 'cosine'"):
        JobSpec.model_validate({"data": {"train": "d"}, "optimization": {"lr_schedule": "attention"}})


def test_the_spec_describes_a_unit_without_options_by_its_modules_docstring():
    description = ModelConfig.model_fields["pooling"].description
    for name, doc in unit_modules("app.adaptation.pooling").items():
        assert f"`{name}`: {doc}" in description and doc


def test_reading_the_names_of_torch_units_imports_none_of_them():
    torch_units = ("app.adaptation.pooling", "app.adaptation.heads", "torch")
    code = f"import sys, app.schemas.spec; print(sorted(m for m in sys.modules if m.startswith({torch_units})))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown pooling 'attention'; known: cls, max, mean, scalar_mix"):
        POOLINGS.get("attention")


def test_registering_a_name_twice_or_outside_its_own_module_is_an_error():
    registry: Registry[int] = Registry("thing", "app.adaptation.things")

    def a():
        pass

    registry.register("a")(a)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(a)
    a.__module__ = "app.adaptation.things.b"
    with pytest.raises(ValueError, match="must live in a module named 'c'"):
        registry.register("c")(a)


def test_slice_rules_and_objectives_match_the_spec():
    assert RULES.names() == sorted(SLICE_RULES) == sorted(set(SliceSpec.model_fields) - {"name", "weight"})
    for name, doc in unit_modules("app.adaptation.slicing").items():
        assert SliceSpec.model_fields[name].description == doc
    # One objective per job option that adds a loss term at every main step; `masked_lm` is an
    # auxiliary task's objective (a task without data of its own).
    assert OBJECTIVES.names() == ["consistency", "distillation", "masked_lm", "slices"]
    assert {"consistency", "slices", "distillation"} <= set(JobSpec.model_fields)
    assert "masked_lm" in typing.get_args(AuxiliaryTask.model_fields["objective"].annotation)

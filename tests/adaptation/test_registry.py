"""The job spec's choices and the engine's registries name exactly the same units."""

import typing

import pytest

from app.adaptation.heads import HEADS
from app.adaptation.pooling import POOLINGS
from app.adaptation.registry import Registry
from app.adaptation.schedules import SCHEDULES
from app.adaptation.strategies import STRATEGIES
from app.schemas.spec import ModelConfig, OptimizationConfig


def literal_names(model: type, field: str) -> list[str]:
    return sorted(typing.get_args(model.model_fields[field].annotation))


@pytest.mark.parametrize(
    ("registry", "model", "field"),
    [
        (POOLINGS, ModelConfig, "pooling"),
        (HEADS, ModelConfig, "head"),
        (SCHEDULES, OptimizationConfig, "lr_schedule"),
        (STRATEGIES, OptimizationConfig, "train"),
    ],
)
def test_spec_names_match_registry(registry: Registry, model: type, field: str):
    assert registry.names() == literal_names(model, field)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown pooling 'attention'; known: cls, max, mean"):
        POOLINGS.get("attention")


def test_registering_a_name_twice_is_an_error():
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(2)

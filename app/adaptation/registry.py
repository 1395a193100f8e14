"""Registries that map the job spec's names to engine units.

A unit is one module of its kind's package, named as the job spec names it (`schedules/cosine.py`
is the lr schedule `cosine`), that registers itself with a decorator. A unit with options
registers its pydantic options model with it, and the job spec's union of that kind is built from
the registry (`Registry.union`); a unit without options is one of the names the spec accepts
(`unit_choice`). So adding a unit means adding one file (plus its test), nothing else.

The job spec is read by the API and the CLI, which run without torch. So `unit_choice` reads the
names and docstrings of a kind's modules without importing them (poolings and heads are torch
modules), and the units whose options the spec reads (schedules, unfreezing, sampling,
regularizers, perturbations, slice rules) import torch only inside the functions that compute,
never at the top of the module; tests/test_layering.py checks that the API loads no torch.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args

from pydantic import BaseModel, Field

from app.schemas.spec_base import ByName

T = TypeVar("T")


class Registry(Generic[T]):
    """The units of one kind: every module of `package` is imported on first use and registers one."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind, self.package = kind, package
        self._units: dict[str, T] = {}
        self._options: dict[str, type[BaseModel]] = {}
        self._discovered = False

    def register(self, unit_name: str | type[BaseModel]) -> Callable[[T], T]:
        """`@REGISTRY.register("mean")`, or `@REGISTRY.register(Options)` for a unit with options,
        whose model's `name` field is the Literal of the unit's name."""
        options = unit_name if isinstance(unit_name, type) else None
        name = options_name(options) if options is not None else unit_name
        assert isinstance(name, str)

        def add(unit: T) -> T:
            if name in self._units:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            module = getattr(unit, "__module__", "")
            if module.startswith(f"{self.package}.") and module.rpartition(".")[2] != name:
                raise ValueError(f"{self.kind} {name!r} must live in a module named {name!r}, not {module!r}")
            self._units[name] = unit
            if options is not None:
                self._options[name] = options
            return unit

        return add

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self._units[name]
        except KeyError:
            known = ", ".join(sorted(self._units))
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._units)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def options(self, name: str) -> type[BaseModel]:
        """The options model of the unit `name`."""
        self.get(name)
        return self._options[name]

    def default(self, name: str) -> Callable[[], BaseModel]:
        """A default_factory for a spec field: the unit `name` with its default options."""
        return lambda: self.options(name)()

    def union(self) -> Any:
        """The spec's type for a choice of this kind: a union of every unit's options model,
        discriminated by `name`, that also takes a bare name for the unit with default options."""
        self.discover()
        models = tuple(self._options[name] for name in sorted(self._options))
        if len(models) != len(self._units):
            missing = sorted(set(self._units) - set(self._options))
            raise TypeError(f"{self.kind} units {', '.join(missing)} registered no options model")
        return Annotated[Union[models], Field(discriminator="name"), ByName]  # noqa: UP007 (a runtime tuple)

    def discover(self) -> None:
        """Import every module of the package, so each registers its unit."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")


def options_name(options: type[BaseModel]) -> str:
    """The unit name an options model stands for: its `name` field's one Literal value."""
    (name,) = get_args(options.model_fields["name"].annotation)
    return name


# ---- kinds whose units are torch modules: read from the files, not imported ----------------------


def unit_modules(package: str) -> dict[str, str]:
    """Unit name -> the first paragraph of its module's docstring, for every module of `package`,
    read from the source files: no unit is imported (nor the package's own __init__)."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(f"no package {package!r}")
    units: dict[str, str] = {}
    for module in pkgutil.iter_modules(found.submodule_search_locations):
        path = Path(module.module_finder.path) / f"{module.name}.py"  # type: ignore[union-attr]
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        units[module.name] = " ".join(doc.split("\n\n")[0].split())
    return dict(sorted(units.items()))


def unit_choice(package: str) -> Any:
    """A Literal of the unit names of `package` (see `unit_modules`)."""
    return Literal[tuple(unit_modules(package))]


def unit_descriptions(package: str, lead: str) -> str:
    """A spec field's description: `lead`, then each unit with its docstring's first paragraph."""
    return lead + " " + " ".join(f"`{name}`: {doc}" for name, doc in unit_modules(package).items())

"""Registries that map the job spec's names to engine units.

A unit registers itself with a decorator in its own module; `discover` imports every module of a
package so that adding a unit means adding one file (plus its test), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._units: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(unit: T) -> T:
            if name in self._units:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._units[name] = unit
            return unit

        return add

    def get(self, name: str) -> T:
        try:
            return self._units[name]
        except KeyError:
            known = ", ".join(sorted(self._units))
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._units)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def discover(package_name: str) -> None:
    """Import every module of a package, so each registers its units."""
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package_name}.{module.name}")

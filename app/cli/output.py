"""Printing: a table for people, or `--json` for programs (the API's own JSON, unchanged)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]


def console() -> Console:
    """The terminal's width; piped or captured output gets wide lines, not ids folded at 80 columns."""
    return Console(width=None if sys.stdout.isatty() else 200)


def print_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [item.model_dump(mode="json") for item in value]
    typer.echo(json.dumps(data, indent=2))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(grid)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """One record as `name  value` lines."""
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        typer.echo(f"{name:<{width}}  {'' if value is None else value}")


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def mean_std(spread: dict[str, Any] | None, show: Callable[[float], str] = lambda v: f"{100 * v:.1f}") -> str:
    if not spread:
        return ""
    std = spread.get("std")
    return show(spread["mean"]) + ("" if std is None else f" ± {show(std)}")


def size(count: int | float | None) -> str:
    """Parameters or bytes, short: 22.7M, 3.1k."""
    if count is None:
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(int(count))

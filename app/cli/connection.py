"""Which service the API commands talk to, and how a refusal is shown: the API's message on
stderr and exit code 1, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer

from app.client import Thaw, ThawError


@dataclass
class Target:
    url: str | None = None
    key: str | None = None


target = Target()  # set by the root command's --url / --key (one CLI invocation, one target)


@contextmanager
def api() -> Iterator[Thaw]:
    try:
        with Thaw(target.url, target.key) as thaw:
            yield thaw
    except ThawError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None

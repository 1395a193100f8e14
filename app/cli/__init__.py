"""`thaw`: the command line. Commands on the service itself (keys, migrate, serve, worker, run)
run where the service runs; the rest talk to its HTTP API, at --url with --key (or THAW_URL and
THAW_API_KEY, or the file `thaw login` writes)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from app.cli import service
from app.cli.connection import target
from app.cli.datasets import datasets
from app.cli.experiments import experiments
from app.cli.jobs import jobs
from app.cli.models import models, predict
from app.cli.runs import predictions
from app.client.config import Connection, config_path, write_config

cli = typer.Typer(
    help="Thaw: adapt pretrained language models to your classification tasks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would print API keys
)


@cli.callback()
def connect(
    url: Annotated[str | None, typer.Option(help="The service, e.g. http://127.0.0.1:8000 (or THAW_URL).")] = None,
    key: Annotated[str | None, typer.Option(help="An API key (or THAW_API_KEY).")] = None,
) -> None:
    target.url, target.key = url, key


@cli.command()
def login(
    key: Annotated[str, typer.Option(prompt=True, hide_input=True, help="An API key from `thaw keys create`.")],
    url: Annotated[str | None, typer.Option(help="The service's URL.")] = None,
) -> None:
    """Save the URL and key for later commands (in THAW_CONFIG, default ~/.config/thaw/config.toml)."""
    connection = Connection.resolve(url or target.url, key)
    write_config(config_path(), connection.url, connection.key)
    typer.echo(f"saved {connection.url} and the key to {config_path()}")


cli.add_typer(datasets, name="datasets")
cli.add_typer(jobs, name="jobs")
cli.add_typer(models, name="models")
cli.add_typer(experiments, name="experiments")
cli.add_typer(predictions, name="predictions")
cli.command("predict")(predict)
cli.add_typer(service.keys, name="keys")
cli.add_typer(service.base_models, name="base-models")
for command in (service.migrate, service.serve, service.worker, service.run):
    cli.command()(command)


CONNECTION_OPTIONS = ("--url", "--key")


def hoist_connection_options(args: list[str]) -> list[str]:
    """`--url` and `--key` belong to the root command, but people write them after the subcommand
    too (`thaw jobs list --url ...`), as most command lines allow: move them to the front. Not for
    `login`, whose own --url and --key are what it saves, nor past a `--`."""
    if _command_of(args) == "login":
        return args
    hoisted, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg.split("=", 1)[0] in CONNECTION_OPTIONS:
            taken = 1 if "=" in arg else 2  # --url=U, or --url U
            hoisted += args[i : i + taken]
        else:
            taken = 1
            rest.append(arg)
        i += taken
    return hoisted + rest


def _command_of(args: list[str]) -> str | None:
    """The subcommand's name: the first word that is neither a root option nor its value."""
    i = 0
    while i < len(args):
        if args[i] in CONNECTION_OPTIONS:
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i]
    return None


def main() -> None:
    cli(args=hoist_connection_options(sys.argv[1:]), prog_name="thaw")

"""`thaw`: the command line. Commands on the service itself (keys, migrate, serve, worker, run)
run where the service runs; the rest talk to its HTTP API, at --url with --key (or THAW_URL and
THAW_API_KEY, or the file `thaw login` writes)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli import service
from app.cli.connection import target
from app.cli.datasets import datasets
from app.cli.experiments import experiments
from app.cli.jobs import jobs
from app.cli.models import models, predict
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
cli.command("predict")(predict)
cli.add_typer(service.keys, name="keys")
for command in (service.migrate, service.serve, service.worker, service.run):
    cli.command()(command)


def main() -> None:
    cli()

"""`thaw datasets`: upload, list, show, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.connection import api
from app.cli.output import JsonFlag, fields, print_json, size, table
from app.schemas.resources import DatasetPublic

datasets = typer.Typer(help="Upload and manage datasets (CSV, TSV or JSONL).", no_args_is_help=True)


def show(dataset: DatasetPublic) -> None:
    counts = ", ".join(f"{label} {n}" for label, n in sorted((dataset.label_counts or {}).items()))
    fields(
        [
            ("id", dataset.id),
            ("name", dataset.name),
            ("rows", dataset.rows),
            ("columns", ", ".join(dataset.columns)),
            ("text field", dataset.text_field),
            ("label field", dataset.label_field or "(unlabeled)"),
            ("labels", counts),
            ("size", f"{size(dataset.size_bytes)}B"),
            ("sha256", dataset.sha256),
        ]
    )


@datasets.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, TSV or JSONL.")],
    name: Annotated[str | None, typer.Option(help="Default: the file's name.")] = None,
    text_field: Annotated[str, typer.Option(help="Column holding the text.")] = "text",
    label_field: Annotated[str | None, typer.Option(help="Column holding the label; omit for unlabeled text.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new dataset's id.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Upload FILE; prints the dataset's id and what the service read from it."""
    with api() as thaw:
        dataset = thaw.upload_dataset(file, name=name, text_field=text_field, label_field=label_field)
    if quiet:
        return typer.echo(dataset.id)
    print_json(dataset) if as_json else show(dataset)


@datasets.command("list")
def list_(limit: int = 50, offset: int = 0, as_json: JsonFlag = False) -> None:
    """Your datasets, newest first."""
    with api() as thaw:
        page = thaw.datasets(limit=limit, offset=offset)
    if as_json:
        return print_json(page)
    rows = [(d.id, d.name, d.rows, d.label_field or "(unlabeled)", len(d.label_counts or {})) for d in page.items]
    table(f"{page.total} datasets", ["id", "name", "rows", "label field", "labels"], rows)


@datasets.command("get")
def get(dataset_id: str, as_json: JsonFlag = False) -> None:
    with api() as thaw:
        dataset = thaw.dataset(dataset_id)
    print_json(dataset) if as_json else show(dataset)


@datasets.command("delete")
def delete(dataset_id: str) -> None:
    """Delete a dataset no active job reads (409 otherwise)."""
    with api() as thaw:
        thaw.delete_dataset(dataset_id)
    typer.echo(f"deleted {dataset_id}")

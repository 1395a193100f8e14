"""`thaw jobs`: create (from a spec file and/or flags), watch, list, get, events, checkpoints, cancel, pause,
resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from app.cli.connection import api
from app.cli.output import JsonFlag, fields, percent, print_json, table
from app.cli.runs import checkpoints
from app.cli.watch import watch as watch_job
from app.client import Thaw
from app.schemas.recipes import deep_merge
from app.schemas.resources import JobPublic

jobs = typer.Typer(help="Submit, watch and manage adaptation jobs.", no_args_is_help=True)
jobs.command("checkpoints")(checkpoints)


def read_spec(path: Path) -> dict[str, Any]:
    """A job spec in YAML or JSON (JSON is YAML)."""
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise typer.BadParameter(f"{path} is not YAML or JSON: {error}", param_hint="--spec") from None
    if not isinstance(spec, dict):
        raise typer.BadParameter(f"{path} must hold a mapping (a job spec)", param_hint="--spec")
    return spec


def assignment(text: str) -> dict[str, Any]:
    """`training.epochs=3` -> {"training": {"epochs": 3}}; the value is JSON when it parses, else a string."""
    path, sep, raw = text.partition("=")
    if not sep or not path:
        raise typer.BadParameter(f"{text!r} is not PATH=VALUE", param_hint="--set")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    for key in reversed(path.split(".")):
        value = {key: value}
    return value


def spec_from(spec_file: Path | None, flags: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """The file, then the flags that were given, then each --set, in that order."""
    spec = read_spec(spec_file) if spec_file else {}
    data = {name: flags.pop(name) for name in ("train", "validation", "test") if flags.get(name) is not None}
    training = {
        name: flags.pop(name)
        for name in ("epochs", "learning_rate", "batch_size", "seed")
        if flags.get(name) is not None  # 0 is a value: --seed 0
    }
    layer: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
    layer |= {"data": data} if data else {}
    layer |= {"training": training} if training else {}
    spec = deep_merge(spec, layer)
    for text in assignments:
        spec = deep_merge(spec, assignment(text))
    if "data" not in spec:
        raise typer.BadParameter("name the training data with --train DATASET_ID or in the spec file")
    return spec


@jobs.command("create")
def create(
    spec_file: Annotated[
        Path | None, typer.Option("--spec", exists=True, dir_okay=False, help="A job spec in YAML or JSON.")
    ] = None,
    train: Annotated[str | None, typer.Option(help="Dataset id to train on.")] = None,
    validation: Annotated[str | None, typer.Option(help="Dataset id to choose the epoch by.")] = None,
    test: Annotated[str | None, typer.Option(help="Dataset id to report test metrics on.")] = None,
    recipe: Annotated[
        str | None, typer.Option(help="auto (default), fine_tuning, setfit, adapters, ulmfit, ... (docs/recipes.md).")
    ] = None,
    base_model: Annotated[str | None, typer.Option(help="Catalog id of the pretrained encoder.")] = None,
    text_field: Annotated[str | None, typer.Option()] = None,
    label_field: Annotated[str | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Any spec field as PATH=VALUE, e.g. model.pooling=cls.")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Then watch it to the end.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job; prints its id. Flags and --set override the spec file."""
    flags = dict(
        train=train,
        validation=validation,
        test=test,
        recipe=recipe,
        base_model=base_model,
        text_field=text_field,
        label_field=label_field,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
    )
    spec = spec_from(spec_file, flags, set_ or [])
    with api() as thaw:
        created = thaw.create_job(spec)
        if not watch:
            return print_json(created) if as_json else typer.echo(created.id)
        typer.echo(created.id, err=as_json)  # with --json, stdout holds one document: the finished job
        follow(thaw, created.id, as_json)


@jobs.command("watch")
def watch(job_id: str, as_json: JsonFlag = False) -> None:
    """A live progress bar until the job ends (exit 0 if it succeeded). Ctrl-C leaves the job running."""
    with api() as thaw:
        follow(thaw, job_id, as_json)


def follow(thaw: Thaw, job_id: str, as_json: bool) -> None:
    """The bar (on stderr) until the job ends, then its card or JSON; Ctrl-C stops only the watching."""
    try:
        job = watch_job(thaw, job_id)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped watching; {job_id} goes on (thaw jobs cancel {job_id} stops it)", err=True)
        raise typer.Exit(130) from None
    finish(job, as_json)


def finish(job: JobPublic, as_json: bool) -> None:
    if as_json:
        print_json(job)
    else:
        show(job)
    if job.status != "succeeded":
        raise typer.Exit(1)


def best_metric(job: JobPublic) -> str:
    metrics = job.metrics or {}
    test = metrics.get("test") or {}
    parts = [f"val {percent(metrics.get('accuracy'))}" if metrics.get("accuracy") is not None else ""]
    parts.append(f"test {percent(test.get('accuracy'))}" if test.get("accuracy") is not None else "")
    return " ".join(part for part in parts if part)


def progress_of(job: JobPublic) -> str:
    progress = job.progress or {}
    if job.status != "running" or not progress:
        return ""
    return f"{percent(progress.get('fraction'))} {progress.get('stage', '')} epoch {progress.get('epoch')}"


def show(job: JobPublic) -> None:
    pairs = [
        ("id", job.id),
        ("status", job.status),
        ("recipe", job.recipe),
        ("auto chose", (job.spec.get("recipe_choice") or {}).get("reason")),
        ("base model", job.base_model),
        ("progress", progress_of(job)),
        ("accuracy", best_metric(job)),
        ("macro-F1", percent((job.metrics or {}).get("macro_f1"))),
        ("train time", f"{job.timings.train_seconds:.1f} s" if job.timings.train_seconds is not None else None),
        ("model", job.model_id),
        ("error", job.error),
    ]
    fields([(name, value) for name, value in pairs if value not in (None, "")])


@jobs.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="queued, running, paused, succeeded, failed, cancelled.")] = None,
    limit: int = 50,
    offset: int = 0,
    as_json: JsonFlag = False,
) -> None:
    """Your jobs, newest first."""
    with api() as thaw:
        page = thaw.jobs(status=status, limit=limit, offset=offset)
    if as_json:
        return print_json(page)
    rows = [(j.id, j.status, j.recipe, j.base_model, progress_of(j), best_metric(j), j.model_id) for j in page.items]
    table(f"{page.total} jobs", ["id", "status", "recipe", "base model", "progress", "accuracy", "model"], rows)


@jobs.command("get")
def get(job_id: str, as_json: JsonFlag = False) -> None:
    with api() as thaw:
        job = thaw.job(job_id)
    print_json(job) if as_json else show(job)


@jobs.command("events")
def events(job_id: str, as_json: JsonFlag = False) -> None:
    """What happened to the job, oldest first."""
    with api() as thaw:
        items = thaw.events(job_id)
    if as_json:
        return print_json(items)
    table(None, ["at", "kind", "message"], [(e.at.strftime("%H:%M:%S"), e.kind, e.message) for e in items])


@jobs.command("cancel")
def cancel(job_id: str, as_json: JsonFlag = False) -> None:
    """A queued or paused job ends at once; a running one within seconds."""
    with api() as thaw:
        job = thaw.cancel_job(job_id)
    print_json(job) if as_json else typer.echo(f"{job.id} {job.status}")


@jobs.command("pause")
def pause(job_id: str) -> None:
    with api() as thaw:
        job = thaw.pause_job(job_id)
    typer.echo(f"{job.id} {job.status}{' (pausing)' if job.pause_requested and job.status == 'running' else ''}")


@jobs.command("resume")
def resume(job_id: str) -> None:
    with api() as thaw:
        job = thaw.resume_job(job_id)
    typer.echo(f"{job.id} {job.status}")

"""`thaw experiments`: run recipes side by side over seeds and read the leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.connection import api
from app.cli.jobs import read_spec
from app.cli.output import JsonFlag, mean_std, print_json, size, table
from app.schemas.resources import ExperimentPublic

experiments = typer.Typer(help="Several recipes x seeds on one dataset pair, as one leaderboard.", no_args_is_help=True)


METRIC_NAMES = {"accuracy": "accuracy", "micro_f1": "micro-F1"}


def leaderboard(experiment: ExperimentPublic) -> None:
    ranked_by = next((row.ranked_by for row in experiment.leaderboard if row.ranked_by), "accuracy")
    rows = []
    for row in experiment.leaderboard:
        metrics = {name: spread.model_dump() for name, spread in row.metrics.items()}
        rows.append(
            (
                row.variant,
                f"{row.finished}/{row.runs}",
                mean_std(metrics.get(row.ranked_by or ranked_by)),
                mean_std(metrics.get("macro_f1")),
                mean_std(row.train_seconds.model_dump() if row.train_seconds else None, lambda v: f"{v:.1f}"),
                size(row.trainable_params),
                mean_std(row.peak_memory_bytes.model_dump() if row.peak_memory_bytes else None, size),
            )
        )
    on = experiment.leaderboard[0].evaluated_on if experiment.leaderboard else "test"
    title = f"{experiment.name} ({experiment.id}): {experiment.status}, {on} metrics (%), mean ± sd over seeds"
    columns = ["variant", "done", METRIC_NAMES[ranked_by], "macro-F1", "train s", "trainable", "peak memory"]
    table(title, columns, rows)


@experiments.command("create")
def create(
    train: Annotated[str, typer.Option(help="Dataset id to train on.")],
    test: Annotated[str | None, typer.Option(help="Dataset id the leaderboard is measured on.")] = None,
    validation: Annotated[str | None, typer.Option(help="Dataset id to choose epochs by.")] = None,
    recipes: Annotated[str, typer.Option(help="Comma-separated recipes, e.g. feature_extraction,fine_tuning.")] = "",
    seeds: Annotated[int, typer.Option(help="Runs per recipe, seeds 0..N-1.")] = 3,
    name: Annotated[str | None, typer.Option()] = None,
    base_model: Annotated[str | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of every run.")] = None,
    common: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="A partial job spec (YAML or JSON) for every run.")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Wait for every run, then print the leaderboard.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Queue every recipe x seed; prints the experiment's id."""
    body: dict[str, Any] = {
        "data": {k: v for k, v in {"train": train, "validation": validation, "test": test}.items() if v},
        "recipes": [r.strip() for r in recipes.split(",") if r.strip()],
        "seeds": seeds,
        "common": read_spec(common) if common else {},
    }
    if epochs is not None:
        body["common"].setdefault("training", {})["epochs"] = epochs
    body |= {k: v for k, v in {"name": name, "base_model": base_model}.items() if v}
    with api() as thaw:
        experiment = thaw.create_experiment(body)
        if watch:
            experiment = wait_for(thaw, experiment.id)
    if as_json:
        return print_json(experiment)
    typer.echo(experiment.id) if not watch else leaderboard(experiment)


def wait_for(thaw: Any, experiment_id: str) -> ExperimentPublic:
    reported = -1

    def report(experiment: ExperimentPublic) -> None:
        nonlocal reported
        done = sum(run.status in ("succeeded", "failed", "cancelled") for run in experiment.runs)
        if done != reported:  # a line per finished run, not per poll
            typer.echo(f"{done}/{len(experiment.runs)} runs finished", err=True)
            reported = done

    try:
        return thaw.wait_experiment(experiment_id, on_progress=report, poll_seconds=5.0)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped waiting; {experiment_id} goes on", err=True)
        raise typer.Exit(130) from None


@experiments.command("get")
def get(experiment_id: str, as_json: JsonFlag = False) -> None:
    """The leaderboard so far: mean ± sd of each metric, train time, trainable parameters, memory."""
    with api() as thaw:
        experiment = thaw.experiment(experiment_id)
    print_json(experiment) if as_json else leaderboard(experiment)


@experiments.command("watch")
def watch(experiment_id: str, as_json: JsonFlag = False) -> None:
    """Wait until every run has finished, then print the leaderboard. Ctrl-C leaves it running."""
    with api() as thaw:
        experiment = wait_for(thaw, experiment_id)
    print_json(experiment) if as_json else leaderboard(experiment)


@experiments.command("list")
def list_(limit: int = 50, offset: int = 0, as_json: JsonFlag = False) -> None:
    with api() as thaw:
        page = thaw.experiments(limit=limit, offset=offset)
    if as_json:
        return print_json(page)
    rows = [(e.id, e.name, e.status, len(e.runs), e.created_at.strftime("%Y-%m-%d %H:%M")) for e in page.items]
    table(f"{page.total} experiments", ["id", "name", "status", "runs", "created"], rows)


@experiments.command("cancel")
def cancel(experiment_id: str) -> None:
    """Cancel every unfinished run."""
    with api() as thaw:
        experiment = thaw.cancel_experiment(experiment_id)
    typer.echo(f"{experiment.id} {experiment.status}")

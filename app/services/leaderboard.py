"""An experiment's leaderboard: each variant's runs summarised (mean and spread), best first."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from app.db.models import Job, Model

METRICS = ("accuracy", "macro_f1", "micro_f1")


def ranking_metric(metrics: dict[str, Any]) -> str | None:
    """What a variant is ranked by: micro-F1 where the runs are multi-label (their `accuracy` is
    subset accuracy, every label of an example right), else accuracy."""
    return next((name for name in ("micro_f1", "accuracy") if metrics.get(name)), None)


def spread(values: Sequence[float]) -> dict[str, Any] | None:
    """Mean, sample standard deviation (None for a single run) and the values themselves."""
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "values": list(values)}


def evaluated_on(jobs: Sequence[Job]) -> str:
    """Test metrics when every finished run has them, else the validation metrics the run kept."""
    return "test" if all((job.metrics or {}).get("test") for job in jobs) else "validation"


def row(variant: str, jobs: Sequence[Job], models: dict[str, Model]) -> dict[str, Any]:
    done = [job for job in jobs if job.status == "succeeded" and job.metrics]
    part = evaluated_on(done)
    scored = [job.metrics["test"] if part == "test" else job.metrics for job in done]
    kept = [models[job.model_id] for job in done if job.model_id in models]
    memory = [m.peak_memory_bytes for m in kept if m.peak_memory_bytes is not None]
    metrics = {
        name: spread([m[name] for m in scored])
        for name in METRICS
        if scored and all(m.get(name) is not None for m in scored)
    }
    return {
        "variant": variant,
        "recipe": jobs[0].spec.get("recipe") if jobs else None,
        "runs": len(jobs),
        "finished": len(done),
        "failed": sum(job.status == "failed" for job in jobs),
        "evaluated_on": part,
        "metrics": metrics,
        "ranked_by": ranking_metric(metrics),
        "train_seconds": spread([job.train_seconds for job in done if job.train_seconds is not None]),
        # The same for every seed of a variant: the spec decides what trains.
        "trainable_params": kept[0].trainable_params if kept else None,
        "total_params": kept[0].total_params if kept else None,
        "peak_memory_bytes": spread(memory),
        "artifact_bytes": kept[0].artifact_bytes if kept else None,
    }


def leaderboard(variants: dict[str, list[Job]], models: dict[str, Model]) -> list[dict[str, Any]]:
    """Best mean accuracy (micro-F1 for multi-label) first; variants with no finished run last."""
    rows = [row(name, jobs, models) for name, jobs in variants.items()]

    def score(entry: dict[str, Any]) -> float:
        ranked_by = entry["ranked_by"]
        return entry["metrics"][ranked_by]["mean"] if ranked_by else float("-inf")

    return sorted(rows, key=score, reverse=True)

"""A job's checkpoints, OpenAI-shaped: one per evaluation at an epoch's end (the trainer's
`evaluated` events), each with its step, epoch, training loss and validation metrics, the best one
of each run marked. A run is the job's training, or a stage's, or an ensemble member's; its best is
the epoch the trainer kept (the highest eval_metric, the first on ties), whose weights the model has
(or, with a refit, the epoch count the refit on every row trained to)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import JobEvent
from app.services.jobs import get_job

METRICS = ("accuracy", "macro_f1", "micro_f1", "threshold")


def list_checkpoints(session: Session, *, tenant_id: str, job_id: str) -> list[dict[str, Any]]:
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "evaluated").order_by(JobEvent.id)
    checkpoints = [_checkpoint(event) for event in session.scalars(query)]
    best: dict[tuple, dict[str, Any]] = {}
    for checkpoint in checkpoints:
        run = (checkpoint["stage"], checkpoint["member"])
        metric = eval_metric(job.spec, checkpoint["stage"])
        kept = best.get(run)
        if kept is None or checkpoint["metrics"].get(metric, float("-inf")) > kept["metrics"].get(
            metric, float("-inf")
        ):
            best[run] = checkpoint
    for checkpoint in best.values():
        checkpoint["best"] = True
    return checkpoints


def _checkpoint(event: JobEvent) -> dict[str, Any]:
    data = event.data or {}
    return {
        "step": data.get("step"),
        "epoch": data.get("epoch"),
        "stage": data.get("stage"),
        "member": data.get("member"),
        "train_loss": data.get("train_loss"),
        "metrics": {key: data[key] for key in METRICS if key in data},
        "best": False,
        "at": event.at,
    }


def eval_metric(spec: dict[str, Any], stage: int | None) -> str:
    """The metric that chose the best epoch: the stage's own training's, or the job's."""
    training = spec.get("training") or {}
    if stage is not None:
        stages = spec.get("stages") or []
        if 0 < stage <= len(stages):
            training = ((stages[stage - 1].get("job") or {}).get("training")) or training
    return training.get("eval_metric", "accuracy")

"""`thaw jobs watch`: a live progress bar (stage, epoch, step, loss, validation metric, ETA) until
the job ends. Watching is read-only: Ctrl-C stops the watching, never the job. The bar goes to
stderr, as `thaw experiments` reports its progress: stdout holds only the result (the job's card,
or its JSON with --json)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.client import Thaw
from app.schemas.resources import JobPublic


def latest_evaluation(thaw: Thaw, job_id: str) -> dict[str, Any] | None:
    """The last `evaluated` event's numbers: the validation metric at the last epoch's end."""
    evaluated = [event for event in thaw.events(job_id) if event.kind == "evaluated" and event.data]
    return evaluated[-1].data if evaluated else None


def describe(job: JobPublic, evaluation: dict[str, Any] | None) -> dict[str, str]:
    progress = job.progress or {}
    # Training: its stage. Otherwise the status says more (paused, queued again after a lost worker).
    stage = (progress.get("stage") or job.status) if job.status == "running" else job.status
    epoch = f"epoch {progress['epoch']}/{progress['epochs']}" if progress.get("epochs") else ""
    loss = f"loss {progress['loss']:.4f}" if progress.get("loss") is not None else ""
    metric = f"val acc {evaluation['accuracy']:.3f}" if evaluation and "accuracy" in evaluation else ""
    eta = progress.get("eta_seconds")
    return {
        "what": " ".join(part for part in (stage, epoch) if part),
        "numbers": "  ".join(part for part in (loss, metric, f"ETA {clock(eta)}" if eta is not None else "") if part),
    }


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def watch(thaw: Thaw, job_id: str, poll_seconds: float = 1.0) -> JobPublic:
    columns = (
        TextColumn("[bold]{task.fields[what]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[numbers]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(job_id, total=None, what="queued", numbers="")

        def update(job: JobPublic) -> None:
            progress = job.progress or {}
            evaluation = latest_evaluation(thaw, job_id) if job.status != "queued" else None
            total = progress.get("total_steps") or None
            done = progress.get("step", 0)
            if job.status == "succeeded" and total:
                done = total  # the last report may precede the last step
            bar.update(task, total=total, completed=done, **describe(job, evaluation))

        return thaw.wait(job_id, on_progress=update, poll_seconds=poll_seconds, raise_on_failure=False)

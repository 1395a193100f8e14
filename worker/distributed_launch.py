"""Start a distributed job's training processes on this node with torchrun, and wait for them.

The worker's task process claimed the job and keeps its heartbeat; this starts

    python -m torch.distributed.run --standalone --nproc_per_node N -m worker.distributed_run RUN_DIR

where RUN_DIR holds what every rank needs (`run.json`: the job, its attempt, its spec, the worker's
settings). Each rank (distributed_run.py) trains; rank 0 records how the job ended. A rank that fails
writes its reason under RUN_DIR/failures, and torchrun then ends the others and exits non-zero: the
launcher reports the first failure, with the tail of the ranks' stderr, for the caller to record.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.schemas.spec import JobSpec

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
FAILURES = "failures"
RANK_MODULE = "worker.distributed_run"
TAIL_LINES = 60  # of the ranks' stderr, kept for a failure's detail


@dataclass(frozen=True)
class Run:
    """What every rank of a job reads from RUN_DIR."""

    directory: Path
    job_id: str
    attempt: int
    spec: JobSpec
    settings: Settings


@dataclass(frozen=True)
class RankFailure:
    reason: str  # the first failing rank's error, as a one-process job would report it
    detail: str  # its traceback, then the tail of the ranks' stderr


def write_run(directory: Path, job_id: str, attempt: int, spec: JobSpec, settings: Settings) -> None:
    # The settings as this worker holds them (they may not all come from its environment); in a
    # folder only this user can read (mkdtemp), since they may hold credentials.
    document = {
        "job_id": job_id,
        "attempt": attempt,
        "spec": spec.model_dump(mode="json"),
        "settings": json.loads(settings.model_dump_json()),
    }
    (directory / RUN_FILE).write_text(json.dumps(document))
    (directory / FAILURES).mkdir()


def read_run(directory: Path) -> Run:
    document = json.loads((directory / RUN_FILE).read_text())
    return Run(
        directory,
        document["job_id"],
        document["attempt"],
        JobSpec.model_validate(document["spec"]),
        Settings.model_validate(document["settings"]),  # as written: the environment does not override them
    )


def write_failure(directory: Path, rank: int, world_size: int, reason: str, detail: str, at: float) -> None:
    report = {"rank": rank, "world_size": world_size, "reason": reason, "detail": detail, "at": at}
    # Whole or not at all: torchrun may stop a rank mid-write, and a half report would hide the cause.
    partial = directory / FAILURES / f"rank-{rank}.partial"
    partial.write_text(json.dumps(report))
    os.replace(partial, directory / FAILURES / f"rank-{rank}.json")


def first_failure(directory: Path) -> dict[str, Any] | None:
    """The failure that came first: a rank's error makes its peers fail after it (a collective whose
    peer is gone), so the earliest report holds the cause."""
    reports = [json.loads(path.read_text()) for path in (directory / FAILURES).glob("rank-*.json")]
    return min(reports, key=lambda report: report["at"], default=None)


def torchrun_command(world_size: int, directory: Path) -> list[str]:
    # --standalone: a rendezvous on this node at a free port, so jobs on one node never collide.
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(world_size),
        "-m",
        RANK_MODULE,
        str(directory),
    ]


def rank_environment(settings: Settings, world_size: int) -> dict[str, str]:
    """This process's environment, with each rank's share of the cores as its thread count (torchrun
    would set 1; N ranks of `cores` threads each would fight over the cores)."""
    cores = settings.torch_threads or len(os.sched_getaffinity(0))
    return {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // world_size))}


def launch_ranks(settings: Settings, job_id: str, attempt: int, spec: JobSpec) -> RankFailure | None:
    """Run the job's ranks to their end; None when they all exited cleanly."""
    world_size = spec.compute.world_size
    with tempfile.TemporaryDirectory(prefix=f"thaw-{job_id}-") as folder:
        directory = Path(folder)
        write_run(directory, job_id, attempt, spec, settings)
        log.info("job %s: starting %d training processes", job_id, world_size)
        command, env = torchrun_command(world_size, directory), rank_environment(settings, world_size)
        code, tail = run_relaying_stderr(command, env)
        if code == 0:
            return None
        return failure_of(directory, code, tail)


def run_relaying_stderr(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `command`; its stderr (the ranks' logs) is passed on to this process's stderr as it
    comes, and its last lines are kept. Returns the exit code and those lines."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE) as process:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            sys.stderr.write(line)
            tail.append(line)
    return process.returncode, "".join(tail)


def failure_of(directory: Path, code: int, tail: str) -> RankFailure:
    stderr = f"torchrun exited with code {code}; the last lines of the ranks' stderr:\n{tail}"
    first = first_failure(directory)
    if first is None:  # no rank got as far as reporting (it could not start, or was killed)
        return RankFailure(f"the training processes failed (torchrun exit code {code})", stderr)
    where = f"rank {first['rank']} of {first['world_size']}"
    return RankFailure(first["reason"], f"{where}:\n{first['detail']}\n{stderr}")

"""One rank of a distributed job, as torchrun starts it (distributed_launch.py):

    python -m torch.distributed.run --standalone --nproc_per_node N -m worker.distributed_run RUN_DIR

Every rank joins the process group, reads the job's data and trains it (runner.py `train`; the
engine shards the batches and synchronises the gradients). Rank 0 does what a job's one process does:
it reports progress and events, publishes the model and records how the job ended
(runner.py `train_and_record`). The other ranks train silently and end when rank 0's run ends,
paused or cancelled at the same step. A rank that fails leaves its reason in RUN_DIR for the launcher,
which records the job as failed.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from app.adaptation import Cancelled, Checkpoints, Paused, SilentCallbacks
from app.adaptation.distributed import World, join_process_group, leave_process_group
from app.logs import configure_logging, job_context
from app.storage.store import build_store
from worker.distributed_launch import Run, read_run, write_failure
from worker.runner import JobCallbacks, train, train_and_record


def main(argv: list[str] | None = None) -> None:
    run = read_run(Path((argv if argv is not None else sys.argv[1:])[0]))
    configure_logging(run.settings)
    world = join_process_group()
    try:
        with job_context(run.job_id):
            train_rank(run, world)
    except Exception as error:
        detail = traceback.format_exc(limit=-8)
        write_failure(run.directory, world.rank, world.size, f"{type(error).__name__}: {error}", detail, time.time())
        raise  # a non-zero exit: torchrun ends the other ranks
    finally:
        leave_process_group()


def train_rank(run: Run, world: World) -> None:
    settings = run.settings
    store = build_store(settings)
    # One folder on this node for every rank: rank 0 writes it, every rank of a resumed run reads it.
    checkpoints = Checkpoints(store.checkpoint_dir(run.job_id), settings.checkpoint_every_steps)
    if world.is_main:
        callbacks = JobCallbacks(settings.resolved_database_url, run.job_id, run.attempt)
        if train_and_record(settings, store, run.job_id, run.attempt, run.spec, callbacks, checkpoints):
            checkpoints.clear()  # the job ended: nobody will resume it (as _run_job does for one process)
        return
    try:
        train(settings, store, run.spec, SilentCallbacks(), checkpoints)  # a replica: rank 0 saves its own
    except (Paused, Cancelled):
        pass  # at the step rank 0 chose; rank 0 records it


if __name__ == "__main__":
    main()

"""The launcher's parts that need no processes: what the ranks read, which failure is the cause, how many
threads each rank gets. tests/e2e/test_distributed_job.py launches real ranks."""

import os
import sys

from app.config import Settings
from tests.adaptation.helpers import job
from worker.distributed_launch import (
    failure_of,
    rank_environment,
    read_run,
    torchrun_command,
    write_failure,
    write_run,
)


def test_the_ranks_read_the_job_and_the_workers_settings_not_their_environment(tmp_path, monkeypatch):
    settings = Settings(var_dir=tmp_path / "var", queue="special", progress_interval_seconds=0.5)
    spec = job(compute={"processes": 2})
    write_run(tmp_path, "job_1", 3, spec, settings)
    monkeypatch.setenv("THAW_QUEUE", "from-the-environment")
    run = read_run(tmp_path)
    assert (run.job_id, run.attempt, run.spec, run.settings) == ("job_1", 3, spec, settings)


def test_the_first_rank_to_fail_is_the_cause(tmp_path):
    write_run(tmp_path, "job_1", 1, job(compute={"processes": 2}), Settings(var_dir=tmp_path))
    # Rank 1 failed first; rank 0 failed after, when its peer was gone.
    write_failure(tmp_path, 0, 2, "DistBackendError: Connection closed by peer", "trace 0", at=20.0)
    write_failure(tmp_path, 1, 2, "RuntimeError: out of memory", "trace 1", at=10.0)
    failure = failure_of(tmp_path, 1, "last lines\n")
    assert failure.reason == "RuntimeError: out of memory"
    assert failure.detail.startswith("rank 1 of 2:\ntrace 1\ntorchrun exited with code 1")
    assert failure.detail.endswith("last lines\n")


def test_a_launch_that_no_rank_reported_on_fails_with_the_exit_code(tmp_path):
    write_run(tmp_path, "job_1", 1, job(compute={"processes": 2}), Settings(var_dir=tmp_path))
    failure = failure_of(tmp_path, 137, "killed\n")
    assert failure.reason == "the training processes failed (torchrun exit code 137)"
    assert "killed" in failure.detail


def test_each_rank_gets_its_share_of_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert rank_environment(Settings(), 2)["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    assert rank_environment(Settings(torch_threads=8), 2)["OMP_NUM_THREADS"] == "4"
    assert rank_environment(Settings(torch_threads=2), 8)["OMP_NUM_THREADS"] == "1"


def test_torchrun_starts_one_rank_module_per_process(tmp_path):
    command = torchrun_command(2, tmp_path)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[3:] == ["--standalone", "--nproc_per_node", "2", "-m", "worker.distributed_run", str(tmp_path)]

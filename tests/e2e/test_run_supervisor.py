"""`thaw run` (what `make run` starts): API and worker up, a killed worker comes back, Ctrl-C stops all."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_settings
from tests.utils.services import ROOT, free_port, healthy, service_env, wait_for

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def worker_pid(supervisor: int) -> int | None:
    for pid in children(supervisor):
        if b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    return None


def test_run_serves_and_restarts_a_dead_worker(tmp_path, tiny_model_dir):
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    port = free_port()
    env = {**service_env(settings), "THAW_PORT": str(port)}
    log = (tmp_path / "run.log").open("w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: healthy(url))
        assert f"Thaw is up at http://127.0.0.1:{port}" in (tmp_path / "run.log").read_text()
        first = wait_for(lambda: worker_pid(supervisor.pid))
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: (pid := worker_pid(supervisor.pid)) and pid != first and pid)
        assert second != first
        assert "worker exited with code -9; restarting it" in (tmp_path / "run.log").read_text()
        assert healthy(url)
    finally:
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=60) == 0
        log.close()
    assert not Path(f"/proc/{second}").exists()  # the worker went down with it

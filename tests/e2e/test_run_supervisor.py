"""`thaw run` (what `make run` starts): API and worker up, a killed worker comes back, Ctrl-C stops all."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import build_settings
from tests.utils.services import ROOT, service_env

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def worker_pid(supervisor: int) -> int | None:
    for pid in children(supervisor):
        if b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    return None


def wait_for(condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_run_serves_and_restarts_a_dead_worker(tmp_path, tiny_model_dir):
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    port = free_port()
    env = {**service_env(settings), "THAW_PORT": str(port)}
    log = (tmp_path / "run.log").open("w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def healthy():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy)
        assert f"Thaw is up at http://127.0.0.1:{port}" in (tmp_path / "run.log").read_text()
        first = wait_for(lambda: worker_pid(supervisor.pid))
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: (pid := worker_pid(supervisor.pid)) and pid != first and pid)
        assert second != first
        assert "worker exited with code -9; restarting it" in (tmp_path / "run.log").read_text()
        assert healthy()
    finally:
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=60) == 0
        log.close()
    assert not Path(f"/proc/{second}").exists()  # the worker went down with it

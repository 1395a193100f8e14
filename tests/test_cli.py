"""The `thaw` command as a user runs it, in a real subprocess."""

import subprocess
import sys

from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.utils.services import ROOT, auth, service_env


def thaw(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_prints_only_a_working_key(settings):
    result = thaw(settings, "keys", "create", "--tenant", "initech")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("thaw_") and len(lines[0]) > 40
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/datasets", headers=auth(lines[0])).status_code == 200
    second = thaw(settings, "keys", "create", "--tenant", "initech").stdout.strip()
    assert second != lines[0]


def test_keys_create_requires_a_tenant(settings):
    result = thaw(settings, "keys", "create")
    assert result.returncode != 0 and "--tenant" in result.stderr


def test_migrate_is_idempotent(settings):
    assert thaw(settings, "migrate").returncode == 0
    assert thaw(settings, "migrate").returncode == 0

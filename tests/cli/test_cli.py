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


def test_a_revoked_key_is_refused_at_once(settings):
    key = thaw(settings, "keys", "create", "--tenant", "initech").stdout.strip()
    other = thaw(settings, "keys", "create", "--tenant", "initech").stdout.strip()
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/datasets", headers=auth(key)).status_code == 200
        revoked = thaw(settings, "keys", "revoke", key)
        assert revoked.returncode == 0 and revoked.stdout.strip() == "revoked"
        assert client.get("/v1/datasets", headers=auth(key)).status_code == 401
        assert client.get("/v1/datasets", headers=auth(other)).status_code == 200  # the tenant's other key lives
    again = thaw(settings, "keys", "revoke", key)
    assert again.returncode == 1 and "no such key" in again.stderr


def test_keys_create_requires_a_tenant(settings):
    result = thaw(settings, "keys", "create")
    assert result.returncode != 0 and "--tenant" in result.stderr


def test_migrate_is_idempotent(settings):
    assert thaw(settings, "migrate").returncode == 0
    assert thaw(settings, "migrate").returncode == 0

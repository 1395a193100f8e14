"""Commands on the service itself: keys, migrations, and starting it (API, worker, or both supervised)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from app.config import get_settings

keys = typer.Typer(help="API keys (run on the service's machine: it writes to its database).", no_args_is_help=True)

ROOT = Path(__file__).resolve().parents[2]


@keys.command("create")
def keys_create(tenant: str = typer.Option(..., help="Tenant name; created if new.")) -> None:
    """Print a new API key for TENANT (only the key, on stdout)."""
    from app.db.session import session_scope
    from app.services.keys import create_key

    with session_scope(get_settings().resolved_database_url) as session:
        key = create_key(session, tenant_name=tenant)
    typer.echo(key)


@keys.command("revoke")
def keys_revoke(key: str = typer.Argument(..., help="The key to revoke, as `keys create` printed it.")) -> None:
    """Revoke KEY: every request with it is refused from now on."""
    from app.db.session import session_scope
    from app.services.keys import revoke_key

    with session_scope(get_settings().resolved_database_url) as session:
        if not revoke_key(session, key=key.strip()):
            typer.echo("no such key, or it is revoked already", err=True)
            raise typer.Exit(1)
    typer.echo("revoked")


def migrate() -> None:
    """Bring the database schema to the latest migration (Alembic)."""
    from alembic import command
    from alembic.config import Config

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = settings.resolved_database_url
    command.upgrade(config, "head")


def api_command() -> list[str]:
    settings = get_settings()
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "app.api.main:create_app",
        "--factory",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]


def worker_command() -> list[str]:
    settings = get_settings()
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--loglevel",
        "INFO",
        "--queues",
        settings.queue,
        "--concurrency",
        "1",
        "--pool",
        "prefork",
    ]


def serve() -> None:
    """Run the API only."""
    os.execv(sys.executable, api_command())


def worker() -> None:
    """Run one training worker only."""
    os.execv(sys.executable, worker_command())


def run() -> None:
    """API and one worker; the worker is restarted whenever it dies. Ctrl-C stops both."""
    settings = get_settings()
    api = subprocess.Popen(api_command(), cwd=ROOT)
    work = subprocess.Popen(worker_command(), cwd=ROOT)
    typer.echo(f"Thaw is up at http://{settings.host}:{settings.port} (API docs at /docs)")
    stopping = False
    started = time.monotonic()

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    backoff = 1.0
    while not stopping and api.poll() is None:
        if work.poll() is not None:
            typer.echo(f"worker exited with code {work.returncode}; restarting it in {backoff:.0f}s", err=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)  # a worker that cannot start must not spin
            work = subprocess.Popen(worker_command(), cwd=ROOT)
            started = time.monotonic()
        elif backoff > 1.0 and time.monotonic() - started > 60:
            backoff = 1.0  # it has been healthy for a minute
        time.sleep(0.5)
    for process in (work, api):
        if process.poll() is None:
            process.terminate()
    for process in (work, api):
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    raise typer.Exit(0 if stopping else 1)

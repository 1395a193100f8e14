"""An S3-compatible server for tests: moto's, on a loopback port, in a thread of the test process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from moto.server import ThreadedMotoServer

from app.config import Settings
from tests.utils.services import free_port

REGION = "us-east-1"
ACCESS_KEY, SECRET_KEY = "thaw-test-key", "thaw-test-secret"  # moto accepts any


@dataclass(frozen=True)
class ObjectStorage:
    endpoint_url: str
    bucket: str

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def settings_for(self, prefix: str) -> dict:
        """The settings that put a service's artifacts under `prefix` of the bucket."""
        return {
            "artifacts_url": f"s3://{self.bucket}/{prefix}",
            "s3_endpoint_url": self.endpoint_url,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
            "s3_region": REGION,
        }

    def keys(self, prefix: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def overwrite(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()


@contextmanager
def moto_server() -> Iterator[ObjectStorage]:
    """A running S3 server with one empty bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        storage = ObjectStorage(f"http://{host}:{port}", f"thaw-test-{uuid.uuid4().hex[:8]}")
        storage.client().create_bucket(Bucket=storage.bucket)
        yield storage
    finally:
        server.stop()


def with_object_storage(settings: Settings, storage: ObjectStorage, prefix: str, **overrides) -> Settings:
    return settings.model_copy(update={**storage.settings_for(prefix), **overrides})

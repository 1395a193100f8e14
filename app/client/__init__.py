"""The Python client: `from app.client import Thaw`.

with Thaw("http://127.0.0.1:8000", key) as thaw:
    train = thaw.upload_dataset("train.csv", label_field="label")
    job = thaw.create_job({"data": {"train": train.id}, "recipe": "adapters"})
    done = thaw.wait(job.id, on_progress=lambda j: print(j.progress))
    print(thaw.predict(done.model_id, ["what a film"])[0].label)
"""

from app.client.errors import (
    Conflict,
    InvalidRequest,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    ThawError,
    TooLarge,
    Unauthorized,
)
from app.client.thaw import Thaw

__all__ = [
    "Conflict",
    "InvalidRequest",
    "JobFailed",
    "NotFound",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "Thaw",
    "ThawError",
    "TooLarge",
    "Unauthorized",
]

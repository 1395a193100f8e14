"""Property-based: any JSON body sent as a job spec gets 202 or a 422 that names a field, never a 5xx,
and a refused spec creates no job."""

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api.main import create_app
from tests.conftest import build_settings
from tests.utils.data import as_csv, sentiment
from tests.utils.services import auth, new_key

KEYS = st.sampled_from(
    ["base_model", "recipe", "data", "train", "model", "optimization", "training", "pooling", "head", "epochs",
     "learning_rate", "unfreezing", "name", "lr_schedule", "regularizers", "adapters", "lora", "r", "size",
     "task", "threshold", "text_fields", "validation_fraction", "every_steps", "thaw_fraction", "batch_size"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["gradual", "lora", "adapters", "all", "mean", "ulmfit", "ewc", "cosine", "TRAIN"])
)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4))


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_model_dir):
    service = build_settings(tmp_path_factory.mktemp("props") / "var", {"tiny-bert": tiny_model_dir})
    service = service.model_copy(update={"job_submissions_per_minute": 0})
    headers = auth(new_key(service))
    with TestClient(create_app(service)) as client:
        csv = as_csv(sentiment(20))
        train = client.post("/v1/datasets", headers=headers, files={"file": ("t.csv", csv)}).json()["id"]
        yield client, headers, train


def fill(value, train):
    """Put the real training set where the generator wrote TRAIN, so that some specs are valid."""
    if value == "TRAIN":
        return train
    if isinstance(value, dict):
        return {k: fill(v, train) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, train) for v in value]
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(KEYS, JSON, max_size=5), st.booleans())
def test_any_spec_is_accepted_or_refused_with_a_named_reason(api, body, with_train):
    client, headers, train = api
    body = fill(body, train)
    if with_train:
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        body = {**body, "base_model": "tiny-bert", "data": {"train": train, **data}}
    before = client.get("/v1/jobs", headers=headers).json()["total"]
    # Sent as Python's json writes it: NaN and Infinity included, which the server's parser accepts.
    raw = json.dumps(body)
    response = client.post("/v1/jobs", headers={**headers, "Content-Type": "application/json"}, content=raw)
    assert response.status_code in (202, 422), response.text
    after = client.get("/v1/jobs", headers=headers).json()["total"]
    if response.status_code == 422:
        assert response.json()["detail"] and after == before
    else:
        assert after == before + 1

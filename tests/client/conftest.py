from collections.abc import Iterator

import pytest

from app.client import Thaw
from app.config import Settings
from tests.conftest import build_settings
from tests.utils.live_api import live_api
from tests.utils.services import new_key


@pytest.fixture
def client_settings(tmp_path, tiny_model_dir) -> Settings:
    """SQLite and the embedded broker (the defaults); both backends are covered by the API tests."""
    settings = build_settings(tmp_path / "var", {"tiny-bert": tiny_model_dir})
    return settings.model_copy(update={"max_upload_bytes": 20_000, "job_submissions_per_minute": 5})


@pytest.fixture
def api_url(client_settings) -> Iterator[str]:
    with live_api(client_settings) as url:
        yield url


@pytest.fixture
def thaw(api_url, client_settings) -> Iterator[Thaw]:
    with Thaw(api_url, new_key(client_settings, "acme")) as client:
        yield client

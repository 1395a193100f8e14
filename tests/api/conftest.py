from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings
from tests.utils.services import auth, new_key


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def headers(settings: Settings) -> dict[str, str]:
    return auth(new_key(settings, "acme"))


@pytest.fixture
def other_headers(settings: Settings) -> dict[str, str]:
    return auth(new_key(settings, "globex"))

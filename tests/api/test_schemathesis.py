"""Schemathesis against the service's own OpenAPI schema: generated requests to every operation,
with a valid key, never get a 5xx (bad input is a 4xx). On SQLite with the embedded broker, and on
PostgreSQL; no mocks.

The apps are built when the module is collected (schemathesis reads their schema then), each in a
temporary folder (and, for PostgreSQL, a fresh database) of its own.
"""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.api.main import create_app
from tests.conftest import PG_ADMIN_URL, build_settings, fresh_database, unavailable
from tests.utils.services import auth, new_key

UNLIMITED = {"job_submissions_per_minute": 0, "predict_requests_per_minute": 0, "sweep_interval_seconds": 0}


def service(database_url: str | None = None):
    var = Path(tempfile.mkdtemp(prefix="thaw-schemathesis-")) / "var"
    config = build_settings(var, {}, database_url).model_copy(update=UNLIMITED)
    return auth(new_key(config)), schemathesis.openapi.from_asgi("/openapi.json", create_app(config))


SQLITE_HEADERS, sqlite_schema = service()
postgres_database = fresh_database(PG_ADMIN_URL)
try:
    PG_HEADERS, postgres_schema = service(postgres_database.__enter__())
    PG_ERROR = None
except Exception as error:  # noqa: BLE001 - any failure means "no server"; reported by the test below
    postgres_schema, PG_ERROR = None, error


@pytest.fixture(scope="module", autouse=True)
def drop_the_postgres_database():
    yield
    if postgres_schema is not None:
        postgres_database.__exit__(None, None, None)


CASES = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@sqlite_schema.parametrize()
@CASES
def test_no_generated_request_is_a_server_error_on_sqlite(case):
    case.call_and_validate(headers=SQLITE_HEADERS, checks=[not_a_server_error])


if postgres_schema is not None:

    @postgres_schema.parametrize()
    @CASES
    def test_no_generated_request_is_a_server_error_on_postgresql(case):
        case.call_and_validate(headers=PG_HEADERS, checks=[not_a_server_error])

else:

    def test_no_generated_request_is_a_server_error_on_postgresql():
        unavailable("PostgreSQL", PG_ERROR)

"""Imports run one way: the engine imports no web, queue or database code; the API does not load torch."""

import subprocess
import sys

from tests.utils.services import ROOT


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in result.stdout.split()}


def test_the_engine_imports_no_web_queue_or_database_code():
    loaded = modules_after_import("app.adaptation")
    assert "torch" in loaded
    assert not loaded & {"fastapi", "starlette", "celery", "kombu", "sqlalchemy", "alembic", "redis"}


def test_importing_the_api_does_not_import_torch():
    loaded = modules_after_import("app.api.main")
    assert "fastapi" in loaded
    assert "torch" not in loaded and "transformers" not in loaded


def test_object_storage_clients_load_only_where_object_storage_is_configured():
    # The engine reads local folders only; the API with the default local store never loads s3fs.
    assert not modules_after_import("app.adaptation") & {"s3fs", "aiobotocore"}
    assert not modules_after_import("app.api.main") & {"s3fs", "aiobotocore"}

"""Alembic is the only schema path: upgrading from empty gives exactly the models' schema, and back."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db.models import Base
from tests.utils.services import ROOT


def test_migrations_match_the_models_and_downgrade_cleanly(settings):
    engine = create_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= {
        "tenants",
        "api_keys",
        "datasets",
        "jobs",
        "job_events",
        "models",
        "experiments",
        "webhook_deliveries",
        "model_runs",
    }
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes.update(url=settings.resolved_database_url, configure_logger=False)
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()

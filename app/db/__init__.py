"""SQLAlchemy models, sessions and queries. Alembic (migrations/) is the only way the schema is made."""

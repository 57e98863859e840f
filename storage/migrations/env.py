"""Alembic environment. storage.db runs it in code with a connection in
``config.attributes["connection"]``; the ``alembic`` command can use ``sqlalchemy.url`` instead."""

from alembic import context
from sqlalchemy import create_engine, text

from storage.models import Base

MIGRATION_LOCK_ID = 0x6B6472  # PostgreSQL advisory lock key: one migrating process at a time


def run_migrations(connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    with create_engine(context.config.get_main_option("sqlalchemy.url")).begin() as conn:
        run_migrations(conn)

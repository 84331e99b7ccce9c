"""Alembic environment for the API's tables. The registry's alias audit tables share the database
but are created by registry/audit.py, so they are left out here."""
from __future__ import annotations

from alembic import context

from dreamops.db import Base
from dreamops.sql import make_engine

VERSION_TABLE = "dreamops_alembic_version"  # MLflow keeps its own `alembic_version`


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name not in Base.metadata.tables)


def run() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                          include_object=include_object, render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()

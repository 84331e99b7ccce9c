"""The Alembic migrations build exactly the tables the models declare, on PostgreSQL, and go
down and up again."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from dreamops.db import MIGRATIONS, upgrade


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def test_migrations_match_the_models_and_round_trip(api_db):
    upgrade(api_db)
    command.check(_config(api_db))  # raises if a model changed without a migration
    command.downgrade(_config(api_db), "base")
    with sa.create_engine(api_db).connect() as conn:
        assert "deployments" not in sa.inspect(conn).get_table_names()
    upgrade(api_db)
    with sa.create_engine(api_db).connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("telemetry_episodes")}
    assert "residual" in columns

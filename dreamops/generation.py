"""A change counter for what the API serves from its in-process caches (assignments, model lookups).

One row in dreamops's SQL database: `epoch` (a random id given when the row is created, so a fresh
database never looks like an old one) and `n`, raised by one in the same transaction as every
change an assignment or a model lookup depends on:
- every alias move the promotion rules record (CLI, train flow, API, webhook, reconciler) and
  every alias put back after a failed unit (`Promotions.undo`);
- every accepted MLflow webhook delivery (a new version, an alias moved in the MLflow UI);
- every rollout step that changes what robots run (deploy, stage advance, promote, rollback,
  completion) and every drift incident opened or closed;
- a robot joining (or leaving) the fleet of a warehouse with a canary, which changes the split.

An API worker reads the row once per cached request (one primary-key read) and rebuilds its
cache when (epoch, n) changed, so a lookup that starts after a change committed never sees what
was there before it, in any worker. `UPDATE ... SET n = n + 1` holds the row lock until commit,
so `n` grows in commit order.
"""
from __future__ import annotations

import uuid

import sqlalchemy as sa

metadata = sa.MetaData()

generation = sa.Table(
    "dreamops_generation", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
)

Key = tuple[str, int]  # (epoch, n)
_READ = sa.select(generation.c.epoch, generation.c.n).where(generation.c.id == 1)


def create(engine: sa.Engine) -> None:
    """The table and its one row (idempotent; concurrent first starts agree on one epoch)."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        _ensure_row(conn)


def _ensure_row(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(generation).values(id=1, epoch=uuid.uuid4().hex, n=0).on_conflict_do_nothing())


def bump(conn: sa.Connection) -> None:
    """Raise the counter inside the caller's transaction: it commits (and becomes visible) with the
    change it announces, or not at all."""
    if conn.execute(generation.update().where(generation.c.id == 1).values(n=generation.c.n + 1)).rowcount == 0:
        _ensure_row(conn)
        conn.execute(generation.update().where(generation.c.id == 1).values(n=generation.c.n + 1))


def read(conn: sa.Connection) -> Key:
    row = conn.execute(_READ).first()
    return (row.epoch, int(row.n)) if row is not None else ("", 0)

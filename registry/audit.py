"""The alias audit log: every move of staging/canary/production/last-known-good, who made it, when,
from which version to which, and why; refused and reverted attempts too.

It lives in dreamops's own SQL database (SQLite by default, PostgreSQL in production), not in MLflow
tags, so it survives alias moves, tag edits and MLflow upgrades, and it is one table to query.
The same database remembers webhook delivery ids, so a replayed delivery is refused across
restarts and API workers. Every recorded move and every accepted delivery raises the cache
generation (dreamops.generation) in the same transaction: API workers drop what they cached.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

import sqlalchemy as sa

from dreamops import generation
from dreamops.db import alias_moves, webhook_deliveries
from dreamops.db import audit_metadata as metadata
from dreamops.sql import lock_promotions, make_engine

OUTCOMES = ("applied", "refused", "reverted")


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    source: str
    reason: str
    outcome: str = "applied"
    at: datetime | None = None
    id: int | None = None


class AuditLog:
    """The log on its own engine, or bound to a caller's open transaction (`bound`): then its rows
    commit or roll back with the caller's (e.g. the deployment row of a canary)."""

    def __init__(self, url: str, conn: sa.Connection | None = None):
        self.url, self.conn = url, conn
        self.engine = _engine(url)

    def bound(self, conn: sa.Connection) -> "AuditLog":
        return AuditLog(self.url, conn)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """The one transaction of an alias move, holding the promotions lock (see dreamops.sql) so
        that no other process judges the aliases while a move is half-written."""
        if self.conn is not None:
            lock_promotions(self.conn)
            yield self.conn
            return
        with self.engine.begin() as conn:
            lock_promotions(conn)
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        if self.conn is not None:
            yield self.conn
        else:
            with self.engine.begin() as conn:
                yield conn

    def record(self, move: AliasMove) -> AliasMove:
        if move.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {move.outcome!r}")
        at = move.at or datetime.now(timezone.utc)
        row = {k: getattr(move, k) for k in ("model", "alias", "from_version", "to_version", "actor", "source",
                                              "reason", "outcome")}
        with self._connection() as conn:
            new_id = conn.execute(alias_moves.insert().values(**row, at=at)).inserted_primary_key[0]
            generation.bump(conn)
        return AliasMove(**row, at=at, id=new_id)

    def history(self, model: str, alias: str | None = None, limit: int | None = None) -> list[AliasMove]:
        """Newest first."""
        q = sa.select(alias_moves).where(alias_moves.c.model == model).order_by(alias_moves.c.id.desc())
        if alias:
            q = q.where(alias_moves.c.alias == alias)
        if limit:
            q = q.limit(limit)
        with self._connection() as conn:
            return [AliasMove(**{**r._mapping, "at": _utc(r.at)}) for r in conn.execute(q)]

    def known_state(self, model: str) -> dict[str, str]:
        """alias -> version as dreamops last left it (the newest applied or reverted move per alias)."""
        state: dict[str, str] = {}
        seen: set[str] = set()
        for move in self.history(model):
            if move.outcome == "refused" or move.alias in seen:
                continue
            seen.add(move.alias)
            if move.to_version is not None:
                state[move.alias] = move.to_version
        return state

    def first_delivery(self, delivery_id: str) -> bool:
        """Remember a webhook delivery id; False when it was seen before (a replay)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(webhook_deliveries.insert().values(delivery_id=delivery_id,
                                                               received_at=datetime.now(timezone.utc)))
                generation.bump(conn)  # a new version or an outside alias move: cached lookups are stale
            return True
        except sa.exc.IntegrityError:
            return False


def _utc(at: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; they were written in UTC
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


@lru_cache(maxsize=8)
def _engine(url: str) -> sa.Engine:
    engine = make_engine(url)
    metadata.create_all(engine)
    generation.create(engine)
    return engine

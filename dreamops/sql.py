"""One way to open dreamops's SQL database (the API's tables and the alias audit log share it).

PostgreSQL as is. SQLite, the embedded default, is used the way it serves concurrent writers:
- WAL journal: readers never wait for the writer, the writer never waits for readers;
- a busy timeout: a writer waits for the one before it instead of failing at once;
- every transaction begins IMMEDIATE (takes the write lock at BEGIN): a transaction that reads
  and then writes cannot fail half-way with `database is locked` because another connection
  wrote after its read (SQLite cannot upgrade a stale read snapshot to a write).
Transactions must be short: on SQLite each one holds the database's one write lock.

`make_reader` is the other way in, for the API's hot reads (the cache generation, the rebuild of
its caches): statements that take no lock and need no transaction around them.
"""
from __future__ import annotations

import zlib

import sqlalchemy as sa

BUSY_TIMEOUT_S = 30.0
# the key of PostgreSQL's transaction-scoped advisory lock that serialises alias moves
PROMOTIONS_LOCK = zlib.crc32(b"dreamops.promotions")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str) -> sa.Engine:
    if not is_sqlite(url):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = _sqlite(url)

    @sa.event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_reader(url: str) -> sa.Engine:
    """An engine for single-statement reads. PostgreSQL in autocommit: one round trip per
    statement, no BEGIN and no ROLLBACK when the connection goes back to the pool (and no ping:
    a read on a dropped connection fails once, the pool then replaces it). SQLite without BEGIN
    IMMEDIATE: each statement reads a consistent snapshot (WAL) and never waits for the writer,
    so readers in every thread and API worker run while one transaction writes."""
    if not is_sqlite(url):
        return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_recycle=600)
    return _sqlite(url)


def _sqlite(url: str) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # no implicit transactions: make_engine issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
        cursor.close()

    return engine


def lock_promotions(conn: sa.Connection) -> None:
    """Serialise alias moves across threads, API workers and CLI processes for the rest of the
    transaction on `conn` (SQLite: the IMMEDIATE transaction already holds the write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PROMOTIONS_LOCK})

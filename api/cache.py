"""In-process caches of what the fleet and engineers ask for often and dreamops changes rarely:
assignments (GET /robots/{id}/assignment), model lookups (GET /models, GET /models/{version}) and
bearer tokens; and the batching of the hot routes' database work. One `View` per API worker
process and database.

Correctness. A request served from the cache first reads the cache generation
(dreamops.generation: one primary-key read that takes no lock) and uses a `Snapshot` labelled with
that generation; everything a snapshot holds was read from the database or MLflow *after* its
label was read, so it is never older than the label. Every change dreamops makes to what these
answers depend on raises the generation in the transaction that makes it (alias moves, rollout
create/advance/end, drift incidents, webhook deliveries, a robot joining a canary's fleet), so a
lookup that starts after a promote, rollback or deploy returned reads the new generation and
rebuilds, in every worker. Concurrent requests share one generation read, but only one that
started after they arrived (`Batcher`), so the guarantee holds per request. `api_cache_ttl_s`
(2 s) bounds what no dreamops transaction announces: version tags edited in MLflow, an alias set
in the MLflow UI before its webhook or the reconciler has reported it, robots leaving a canary's
fleet after an hour of silence. Tokens are cached for the same time without a generation read (a
token revoked by hand works for at most that long). `api_cache_ttl_s = 0` turns every cache off.

Writes. An assignment lookup writes the robot's row (last_seen, running_version) only when its
version or warehouse changed, when it was not written since the generation last changed, or when
it was last written `robot_seen_interval_s` (30 s) ago: last_seen is at most that stale, against
the hour a robot counts in a canary's split. A robot entering (or leaving) the fleet of a
warehouse that has a canary changes the split, so that write also raises the generation.
Telemetry batches that arrive together are inserted together: one transaction, one executemany.

The event loop does no database or MLflow work: generation reads, loads, writes and inserts run
in FastAPI's threadpool (one thread hop per batch of requests, not per request).
"""
from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import sqlalchemy as sa
from fastapi.concurrency import run_in_threadpool

from dreamops import generation
from dreamops.api import canary
from dreamops.db import Deployment, DriftIncident, Robot, TelemetryEpisode, reader, session_factory, utcnow

MAX_ANSWERS = 50_000  # cached answers per snapshot (assignments: one per robot)
MAX_TOKENS = 10_000
MAX_ROWS = 5_000  # telemetry rows per insert transaction
GENERATION_SQL = "SELECT epoch, n FROM dreamops_generation WHERE id = 1"


class Batcher:
    """`await submit(item)` runs `fn(items)` in the threadpool for every item submitted while no run
    was in progress: a run starts after each of its items was submitted, and one thread hop serves
    all of them. `fn` returns one result per item, or raises for all of them."""

    def __init__(self, fn: Callable[[list], list], max_items: int = 10_000):
        self.fn, self.max_items = fn, max_items
        self._queue: list[tuple[object, asyncio.Future]] = []
        self._running = False

    async def submit(self, item):
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:self.max_items], self._queue[self.max_items:]
                try:
                    results = await run_in_threadpool(self.fn, [item for item, _ in batch])
                except BaseException as exc:  # noqa: BLE001  (every waiter gets it; cancellation too)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = False


@dataclass(frozen=True)
class Rollout:
    """An active deployment, as assignments and telemetry need it (canary.covers reads robot_ids
    and warehouse_id)."""
    id: str
    model: str
    version: str
    baseline_version: str | None
    warehouse_id: str | None
    robot_ids: list | None
    stage_index: int
    percent: int
    policy: dict


@dataclass(frozen=True)
class Incident:
    id: str
    version: str
    fallback_version: str | None


@dataclass
class Fleet:
    """The state assignments are computed from, read once per snapshot."""
    rollouts: list[Rollout]  # newest first, like canary.active_for
    splits: dict[str, canary.Split]
    split_warehouses: set[str]  # warehouses with a warehouse-wide rollout: their fleets are split
    warehouse_of: dict[str, str]  # robot -> warehouse, for the robots in those fleets
    incidents: dict[tuple[str, str], Incident]  # (warehouse, model) -> the newest open drift incident
    by_id: dict[str, Rollout] = field(default_factory=dict)

    def active_for(self, robot_id: str, warehouse_id: str) -> Rollout | None:
        return next((r for r in self.rollouts if canary.covers(r, robot_id, warehouse_id)), None)

    def changes_split(self, robot_id: str, warehouse_id: str) -> bool:
        """Whether this robot asking from `warehouse_id` enters or leaves a split fleet."""
        known = self.warehouse_of.get(robot_id)
        return known != warehouse_id and (warehouse_id in self.split_warehouses or known is not None)


@dataclass(frozen=True)
class Answer:
    """One robot's assignment: what it runs, and the response body."""
    version: str | None
    body: bytes
    resolve: tuple[Incident, str | None] | None = None  # a drift incident to close (production moved on)


class Snapshot:
    """What one generation looks like, filled lazily (each part read after the label was). The
    loaders do I/O (call them in a thread); the rest is memory only."""

    def __init__(self, key: generation.Key, url: str):
        self.key, self.url, self.created = key, url, time.monotonic()
        self._lock = threading.Lock()  # loads
        self._answer_lock = threading.Lock()  # model lookups (MLflow calls: they must not hold up loads)
        self.fleet: Fleet | None = None
        self.production: dict[str, str | None] = {}
        self.answers: dict[tuple, object] = {}

    def load(self, model: str | None = None) -> None:
        """Read the fleet (the database) and, for `model`, the production alias (MLflow)."""
        with self._lock:
            if self.fleet is None:
                self.fleet = _read_fleet(self.url)
            if model is not None and model not in self.production:
                from dreamops.registry import store

                found = store.find_alias(model, "production")
                self.production[model] = str(found.version) if found else None

    def ready(self, model: str) -> bool:
        return self.fleet is not None and model in self.production

    def compute(self, key: tuple, fn: Callable[[], bytes]) -> bytes:
        """A model lookup's body, computed once per snapshot (concurrent askers wait for the first)."""
        with self._answer_lock:
            body = self.answers.get(key)
            if body is None:
                body = fn()
                self.remember(key, body)
        return body

    def remember(self, key: tuple, value) -> None:
        if len(self.answers) < MAX_ANSWERS:
            self.answers[key] = value


def _read_fleet(url: str) -> Fleet:
    D, I = Deployment, DriftIncident
    with reader(url).connect() as conn:
        active = conn.execute(sa.select(D.id, D.model, D.version, D.baseline_version, D.warehouse_id, D.robot_ids,
                                        D.stages, D.stage_index, D.policy).where(D.status == canary.ACTIVE)
                              .order_by(D.created_at.desc())).all()
        wide = sorted({d.warehouse_id for d in active if not d.robot_ids and d.warehouse_id is not None})
        robots = conn.execute(canary.fleet_query(wide)).all() if wide else []
        incidents = conn.execute(sa.select(I.id, I.warehouse_id, I.model, I.version, I.fallback_version)
                                 .where(I.resolved_at.is_(None)).order_by(I.detected_at.desc())).all()
    rollouts = [Rollout(d.id, d.model, d.version, d.baseline_version, d.warehouse_id, d.robot_ids, d.stage_index,
                        d.stages[d.stage_index], d.policy) for d in active]
    warehouse_of = {r.id: r.warehouse_id for r in robots}
    splits = {}
    for r in rollouts:
        fleet = r.robot_ids if r.robot_ids else [robot for robot, w in warehouse_of.items() if w == r.warehouse_id]
        splits[r.id] = canary.Split(r.id, fleet)
    open_incidents: dict[tuple[str, str], Incident] = {}
    for i in incidents:
        open_incidents.setdefault((i.warehouse_id, i.model), Incident(i.id, i.version, i.fallback_version))
    return Fleet(rollouts, splits, set(wide), warehouse_of, open_incidents, {r.id: r for r in rollouts})


class View:
    """The caches and batchers of one API worker for one database."""

    def __init__(self, url: str, ttl_s: float, seen_interval_s: float):
        self.url, self.ttl_s, self.seen_interval_s = url, ttl_s, seen_interval_s
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._written: dict[str, tuple[str, str | None, float]] = {}  # robot -> (warehouse, version, when)
        self._written_key: generation.Key | None = None
        self._batchers: dict[int, tuple[asyncio.AbstractEventLoop, Batcher, Batcher]] = {}

    # --- the generation, read in batches ---

    def read_keys(self, items: list) -> list[generation.Key]:
        """One read for every request waiting (a raw cursor: the cheapest way through the pool)."""
        engine = reader(self.url)
        for attempt in (0, 1):
            conn = engine.raw_connection()
            try:
                cursor = conn.cursor()
                cursor.execute(GENERATION_SQL)
                row = cursor.fetchone()
                cursor.close()
            except engine.dialect.loaded_dbapi.Error:
                conn.invalidate()  # e.g. a pooled connection the server dropped: once more, on a new one
                if attempt:
                    raise
                continue
            finally:
                conn.close()
            key = (row[0], int(row[1])) if row is not None else ("", 0)
            return [key] * len(items)
        raise AssertionError("unreachable")

    def _batcher(self, which: int) -> Batcher:
        loop = asyncio.get_running_loop()
        entry = self._batchers.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = self._batchers[id(loop)] = (loop, Batcher(self.read_keys), Batcher(self.insert_rows, MAX_ROWS))
        return entry[1 + which]

    async def current(self) -> Snapshot:
        """The snapshot for this request: the cached one while the generation is unchanged and it is
        younger than the TTL, else a new one."""
        return self.snapshot_for(await self._batcher(0).submit(None))

    def snapshot_for(self, key: generation.Key) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.key == key and time.monotonic() - snapshot.created < self.ttl_s:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and snapshot.key == key and time.monotonic() - snapshot.created < self.ttl_s:
                return snapshot  # another thread made it
            if key != self._written_key:  # what robots run may have changed: write each robot's row again
                self._written.clear()
                self._written_key = key
            snapshot = Snapshot(key, self.url)
            if self.ttl_s > 0:
                self._snapshot = snapshot
            return snapshot

    # --- what an assignment lookup writes ---

    def must_write(self, robot_id: str, warehouse_id: str, version: str | None, changes_split: bool) -> bool:
        last = self._written.get(robot_id)
        return (self.ttl_s <= 0 or changes_split or last is None or last[:2] != (warehouse_id, version)
                or time.monotonic() - last[2] >= self.seen_interval_s)

    def write_seen(self, robot_id: str, warehouse_id: str, version: str | None, changes_split: bool,
                   resolve: tuple[Incident, str | None] | None = None) -> None:
        """The robot's row (one upsert: simultaneous first contacts all succeed), with the
        generation raised when the split changed, and a drift incident closed when asked."""
        now = time.monotonic()
        dialect = reader(self.url).dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        values = {"warehouse_id": warehouse_id, "last_seen": utcnow(), "running_version": version}
        statement = insert(Robot).values(id=robot_id, **values).on_conflict_do_update(index_elements=[Robot.id],
                                                                                      set_=values)
        with _engine(self.url).begin() as conn:
            conn.execute(statement)
            bump = changes_split
            if resolve is not None:
                incident, production = resolve
                closed = conn.execute(sa.update(DriftIncident).where(DriftIncident.id == incident.id,
                                                                     DriftIncident.resolved_at.is_(None))
                                      .values(resolved_at=utcnow(), resolution=f"production moved to {production}"))
                bump = bump or closed.rowcount > 0
            if bump:
                generation.bump(conn)
        self._written[robot_id] = (warehouse_id, version, now)

    # --- telemetry, inserted in batches ---

    async def insert(self, rows: list[dict]) -> None:
        failed = await self._batcher(1).submit(rows)
        if failed is not None:
            raise failed

    def insert_rows(self, batches: list[list[dict]]) -> list[None]:
        """Every waiting request's episodes in one transaction (one executemany). If that fails, each
        request's episodes on their own, so one bad batch fails only its own request."""
        engine = _engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.insert(TelemetryEpisode), [row for rows in batches for row in rows])
            return [None] * len(batches)
        except sa.exc.SQLAlchemyError:
            if len(batches) == 1:
                raise
        out = []
        for rows in batches:
            try:
                with engine.begin() as conn:
                    conn.execute(sa.insert(TelemetryEpisode), rows)
                out.append(None)
            except sa.exc.SQLAlchemyError as exc:
                out.append(exc)
        return out


def _engine(url: str) -> sa.Engine:
    return session_factory(url).kw["bind"]


@lru_cache(maxsize=8)
def view(url: str, ttl_s: float, seen_interval_s: float) -> View:
    return View(url, ttl_s, seen_interval_s)


class Tokens:
    """Checked bearer tokens -> their principal, for `ttl_s` (keyed by the header's sha256)."""

    def __init__(self):
        self._checked: dict[bytes, tuple[object, float]] = {}

    @staticmethod
    def _key(authorization: str) -> bytes:
        return hashlib.sha256(authorization.encode()).digest()

    def get(self, authorization: str | None, ttl_s: float):
        if not authorization or ttl_s <= 0:
            return None
        hit = self._checked.get(self._key(authorization))
        return hit[0] if hit is not None and time.monotonic() - hit[1] < ttl_s else None

    def put(self, authorization: str, principal, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        if len(self._checked) >= MAX_TOKENS:
            self._checked.clear()
        self._checked[self._key(authorization)] = (principal, time.monotonic())

    def clear(self) -> None:
        self._checked.clear()


tokens = Tokens()


class Evaluations:
    """When this worker last judged each rollout from telemetry (canary_eval_interval_s)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def due(self, deployment_id: str, interval_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(deployment_id)
            if last is not None and now - last < interval_s:
                return False
            self._last[deployment_id] = now
            return True

    def clear(self) -> None:
        with self._lock:
            self._last.clear()


evaluations = Evaluations()


def reset() -> None:
    """Forget everything cached (tests that change the settings or the database)."""
    view.cache_clear()
    tokens.clear()
    evaluations.clear()

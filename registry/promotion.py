"""The promotion rules, enforced here for every caller: the CLI, the train flow, the REST API, MLflow
webhooks and the alias reconciler.

- `staging`, `canary`, `production` (and `last-known-good`) only point at versions whose
  `validation_status` is `passed` and whose every `gate.*` tag says passed.
- Moving `production` moves the previous holder to `last-known-good`.
- `rollback` puts `last-known-good` (or a chosen passed version) back in production.
- Every move, refused attempt and revert is written to the audit log (who, when, from, to, why),
  once: a move's audit rows commit with its alias writes, or the aliases are put back; moves are
  serialised across threads and processes by a database lock (see dreamops.sql), so the webhook
  handler or the reconciler never sees a move of ours half-written and records it a second time.
- A move made outside dreamops (an engineer setting an alias in the MLflow UI) is seen by the
  webhook handler or the reconciler and goes through the same rules: accepted and completed
  (last-known-good), or reverted.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import sqlalchemy as sa

from mlflow.entities.model_registry import ModelVersion

from dreamops import generation
from dreamops.registry import store
from dreamops.registry.audit import AliasMove, AuditLog
from dreamops.registry.errors import PromotionRefusedError
from dreamops.settings import Settings
from dreamops.sql import lock_promotions

ALIASES = store.ALIASES
PROMOTABLE = ("staging", "canary", "production")
# production first: accepting it moves last-known-good, which must then not look like an outside move
RECONCILE_ORDER = ("production", "canary", "staging", "last-known-good")


def refusal(mv: ModelVersion) -> str | None:
    """Why `mv` may not hold a gated alias, or None when it may."""
    status = mv.tags.get("validation_status", "missing")
    if status != "passed":
        return f"validation_status={status}"
    gates = {k: v for k, v in mv.tags.items() if k.startswith("gate.")}
    if not gates:
        return "no gate results recorded on the version"
    failed = sorted(k for k, v in gates.items() if not v.startswith("passed"))
    if failed:
        return f"gates not passed: {', '.join(failed)}"
    return None


class Promotions:
    """Alias moves of the registry's models, under the rules above.

    Each public method is one unit: its audit rows commit with its alias writes in one
    transaction that holds the promotions lock, and a failure puts the aliases back. `bind(conn)`
    joins a caller's open transaction instead (the API's canary: the deployment row, its audit
    rows and the alias move commit together); the caller commits, or rolls back and calls `undo()`."""

    def __init__(self, audit: AuditLog, actor: str):
        self.audit, self.actor = audit, actor
        self._written: list[tuple[str, str, str | None]] = []  # (model, alias, previous holder), in order

    @classmethod
    def from_settings(cls, settings: Settings, actor: str | None = None) -> "Promotions":
        settings.resolved_home.mkdir(parents=True, exist_ok=True)
        return cls(AuditLog(settings.sql_url), actor or settings.actor_name)

    def bind(self, conn: sa.Connection) -> "Promotions":
        return Promotions(self.audit.bound(conn), self.actor)

    def undo(self) -> None:
        """Put back every alias this (bound) unit wrote, newest first: its transaction did not commit."""
        for model, alias, previous in reversed(self._written):
            with contextlib.suppress(Exception):  # best effort: the reconciler repairs what is left
                store.write_alias(model, alias, previous)
        if self._written:  # an API worker may have cached the alias while it was written
            with contextlib.suppress(Exception), self.audit.engine.begin() as conn:
                generation.bump(conn)
        self._written.clear()

    @contextlib.contextmanager
    def _unit(self) -> Iterator["Promotions"]:
        if self.audit.conn is not None:
            lock_promotions(self.audit.conn)
            yield self
            return
        unit = Promotions(self.audit, self.actor)
        try:
            with self.audit.transaction() as conn:
                unit.audit = self.audit.bound(conn)
                yield unit
        except BaseException:
            unit.undo()
            raise

    def _write(self, model: str, alias: str, version: str | None, previous: str | None) -> None:
        self._written.append((model, alias, previous))
        store.write_alias(model, alias, version)

    # --- moves asked for by a person or a flow ---

    def promote(self, model: str, ref: str, alias: str, reason: str = "", source: str = "cli") -> list[AliasMove]:
        """Point `alias` (staging | canary | production) at version `ref` (number, semver or alias)."""
        if alias not in PROMOTABLE:
            raise ValueError(f"cannot promote to {alias!r}: choose one of {', '.join(PROMOTABLE)} "
                             f"(last-known-good follows production moves and rollbacks)")
        with self._unit() as p:
            mv = store.get_version(model, ref)
            version, current = str(mv.version), store.aliases(model)
            why_not = refusal(mv)
            if why_not:  # the refusal is recorded (committed), then raised
                p._record(model, alias, current.get(alias), version, source, f"{reason} [refused: {why_not}]".strip(),
                          "refused")
            else:
                return p._move(model, alias, current.get(alias), version, source, reason or f"promoted to {alias}")
        raise PromotionRefusedError(f"version {version} of {model!r} may not become {alias!r}: {why_not}")

    def rollback(self, model: str, to: str | None = None, reason: str = "", source: str = "cli") -> list[AliasMove]:
        """Put `last-known-good` (or version `to`) back in production, in one step."""
        with self._unit() as p:
            current = store.aliases(model)
            bad = current.get("production")
            target_ref = to or current.get("last-known-good")
            if target_ref is None:
                raise PromotionRefusedError(f"{model!r} has no last-known-good version; name one with --to")
            mv = store.get_version(model, target_ref)
            target = str(mv.version)
            if target == bad:
                raise PromotionRefusedError(f"version {target} of {model!r} is already in production")
            why_not = refusal(mv)
            if not why_not:
                return p._rollback(model, current, bad, target, reason, source)
            p._record(model, "production", bad, target, source, f"rollback [refused: {why_not}]", "refused")
        raise PromotionRefusedError(f"cannot roll back {model!r} to version {target}: {why_not}")

    def _rollback(self, model: str, current: dict[str, str], bad: str | None, target: str, reason: str,
                  source: str) -> list[AliasMove]:
        reason = reason or (f"rollback from {bad}" if bad else "rollback")
        self._write(model, "production", target, bad)
        moves = [self._record(model, "production", bad, target, source, reason)]
        if bad:
            store.set_version_tags(model, bad, {"rolled_back_at": datetime.now(timezone.utc).isoformat()})
        new_lkg = self._previous_good(model, exclude={target, bad})
        if new_lkg != current.get("last-known-good"):
            self._write(model, "last-known-good", new_lkg, current.get("last-known-good"))
            moves.append(self._record(model, "last-known-good", current.get("last-known-good"), new_lkg, source,
                                      f"{reason}: the production holder before {target}"))
        return moves

    def retire(self, model: str, alias: str, reason: str, source: str = "api") -> list[AliasMove]:
        """Remove `alias` (e.g. `canary` when a rollout ends), recorded like any move."""
        with self._unit() as p:
            holder = store.aliases(model).get(alias)
            if holder is None:
                return []
            p._write(model, alias, None, holder)
            return [p._record(model, alias, holder, None, source, reason)]

    # --- moves seen after the fact (MLflow UI via webhook, or the reconciler's poll) ---

    def reconcile(self, model: str, source: str = "reconciler", actor: str = "mlflow") -> list[AliasMove]:
        """Compare MLflow's aliases with the audit log's last known state and apply the rules to
        every difference. Idempotent: dreamops's own moves are already in the log."""
        moves: list[AliasMove] = []
        with self._unit() as p:
            for alias in RECONCILE_ORDER:
                seen = store.aliases(model).get(alias)  # fresh: an earlier alias may have moved this one
                known = p.audit.known_state(model).get(alias)
                if seen != known:
                    moves += p._observe(model, alias, known, seen, source, actor)
        return moves

    def _observe(self, model: str, alias: str, known: str | None, seen: str | None, source: str,
                 actor: str) -> list[AliasMove]:
        by = f"{actor} via {source}"
        if seen is None:
            return [self._record(model, alias, known, None, source, f"alias removed outside dreamops ({by})",
                                 actor=actor)]
        why_not = refusal(store.get_version(model, seen))
        if why_not:
            self._write(model, alias, known, seen)
            return [self._record(model, alias, seen, known, source,
                                 f"reverted: version {seen} was set outside dreamops ({by}) but {why_not}",
                                 "reverted", actor=actor)]
        return self._move(model, alias, known, seen, source, f"set outside dreamops ({by})", actor=actor,
                          already_written=True)

    # --- helpers ---

    def _move(self, model: str, alias: str, prev: str | None, version: str, source: str, reason: str,
              actor: str | None = None, already_written: bool = False) -> list[AliasMove]:
        if prev == version and not already_written:
            return []
        if not already_written:
            self._write(model, alias, version, prev)
        moves = [self._record(model, alias, prev, version, source, reason, actor=actor)]
        if alias == "production" and prev and prev != version:
            lkg = store.aliases(model).get("last-known-good")
            self._write(model, "last-known-good", prev, lkg)
            moves.append(self._record(model, "last-known-good", lkg, prev, source,
                                      f"previous production, replaced by {version}", actor=actor))
        return moves

    def _previous_good(self, model: str, exclude: set) -> str | None:
        """The newest earlier production holder that may still serve (for last-known-good after a rollback)."""
        for move in self.audit.history(model, alias="production"):
            v = move.to_version
            if move.outcome == "refused" or v is None or v in exclude:
                continue
            mv = store.get_version(model, v)
            if "rolled_back_at" not in mv.tags and refusal(mv) is None:
                return v
        return None

    def _record(self, model: str, alias: str, from_version: str | None, to_version: str | None, source: str,
                reason: str, outcome: str = "applied", actor: str | None = None) -> AliasMove:
        return self.audit.record(AliasMove(model, alias, from_version, to_version, actor or self.actor, source,
                                           reason, outcome))


def reconcile_forever(promotions: Promotions, models: list[str] | None, interval_s: float,
                      on_moves=lambda moves: None, stop: threading.Event | None = None) -> None:
    """Poll MLflow's aliases every `interval_s` and apply the rules to outside moves: the fallback
    where MLflow's webhooks cannot reach the API (private network, http only)."""
    stop = stop or threading.Event()
    while not stop.is_set():
        for model in models or store.model_names():
            on_moves(promotions.reconcile(model))
        stop.wait(interval_s)

"""Request and response bodies of the REST API."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from dreamops.registry.audit import AliasMove


class AliasMoveOut(BaseModel):
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    source: str
    reason: str
    outcome: str
    at: datetime | None

    @classmethod
    def of(cls, move: AliasMove) -> "AliasMoveOut":
        return cls(model=move.model, alias=move.alias, from_version=move.from_version, to_version=move.to_version,
                   actor=move.actor, source=move.source, reason=move.reason, outcome=move.outcome, at=move.at)


class WebhookAck(BaseModel):
    delivery_id: str
    event: str
    model: str | None
    moves: list[AliasMoveOut]

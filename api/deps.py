"""Dependencies shared by the routes: settings read once, a database session per request, the
caller's token and role, one promotion engine and webhook receiver per process."""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from fastapi import Depends, Header, HTTPException
from sqlalchemy.orm import Session

from dreamops.api.auth import Principal, authenticate
from dreamops.api.db import session_factory
from dreamops.registry import store
from dreamops.registry.promotion import Promotions
from dreamops.registry.webhooks import WebhookReceiver
from dreamops.settings import Settings, get_settings


def settings() -> Settings:
    return get_settings()


def db() -> Iterator[Session]:
    session = session_factory(get_settings().sql_url)()
    try:
        yield session
    finally:
        session.close()


@lru_cache(maxsize=1)
def promotions() -> Promotions:
    s = get_settings()
    store.configure(s)
    return Promotions.from_settings(s, actor="dreamops-api")


def principal(authorization: str | None = Header(None), session: Session = Depends(db)) -> Principal:
    return authenticate(session, authorization)


def allowed(permission: str):
    """Route dependency: the caller's principal, if its role may do `permission` (else 403)."""
    def check(who: Principal = Depends(principal)) -> Principal:
        who.require(permission)
        return who
    return check


@lru_cache(maxsize=1)
def _receiver(secret: str) -> WebhookReceiver:
    p = promotions()
    return WebhookReceiver(secret, p.audit, p, get_settings().webhook_max_age_s)


def webhook_receiver() -> WebhookReceiver:
    secret = get_settings().webhook_secret
    if not secret:
        raise HTTPException(503, "webhooks are not configured (DREAMOPS_WEBHOOK_SECRET is unset)")
    return _receiver(secret)

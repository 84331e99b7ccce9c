"""Dependencies shared by the routes: settings read once, a database session per request, the
caller's token and role (cached, api/cache.py), one promotion engine and webhook receiver per process.
The fleet's hot routes (assignment, telemetry) open their session themselves, in their one thread."""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from fastapi import Depends, Header, HTTPException
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from dreamops.api import cache
from dreamops.api.auth import Principal, authenticate
from dreamops.db import session_factory
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


async def principal(authorization: str | None = Header(None)) -> Principal:
    """The caller's token, checked against the database at most once per api_cache_ttl_s per worker.

    Async with no I/O on a hit; a miss is checked in the threadpool, on a session opened and closed
    there. It used to take the request's session (`db`): that held a pooled connection from the
    token check until the route had run, and under load every threadpool thread could wait for a
    connection held by requests waiting for a thread (the pool's 30 s timeout, then a 500)."""
    ttl = get_settings().api_cache_ttl_s
    who = cache.tokens.get(authorization, ttl)
    if who is None:
        who = await run_in_threadpool(_check_token, authorization, ttl)
    return who


def _check_token(authorization: str | None, ttl: float) -> Principal:
    with session_factory(get_settings().sql_url)() as session:
        who = authenticate(session, authorization)
    cache.tokens.put(authorization, who, ttl)
    return who


def allowed(permission: str):
    """Route dependency: the caller's principal, if its role may do `permission` (else 403)."""
    async def check(who: Principal = Depends(principal)) -> Principal:
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

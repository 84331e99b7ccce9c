"""Dependencies shared by the routes: settings read once, one promotion engine and webhook receiver
per process."""
from __future__ import annotations

from functools import lru_cache

from fastapi import HTTPException

from dreamops.registry import store
from dreamops.registry.promotion import Promotions
from dreamops.registry.webhooks import WebhookReceiver
from dreamops.settings import Settings, get_settings


@lru_cache(maxsize=1)
def promotions() -> Promotions:
    settings = get_settings()
    store.configure(settings)
    return Promotions.from_settings(settings, actor="dreamops-api")


@lru_cache(maxsize=1)
def _receiver(secret: str) -> WebhookReceiver:
    settings: Settings = get_settings()
    p = promotions()
    return WebhookReceiver(secret, p.audit, p, settings.webhook_max_age_s)


def webhook_receiver() -> WebhookReceiver:
    secret = get_settings().webhook_secret
    if not secret:
        raise HTTPException(503, "webhooks are not configured (DREAMOPS_WEBHOOK_SECRET is unset)")
    return _receiver(secret)

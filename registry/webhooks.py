"""MLflow webhook deliveries: verify, refuse replays, hand alias events to the promotion rules.

MLflow (>= 3.3) signs each delivery as in the Standard Webhooks spec:
  X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")>
  X-MLflow-Delivery-Id, X-MLflow-Timestamp (unix seconds)
A delivery is accepted only with a valid signature, a timestamp within `max_age_s` of now, and a
delivery id never seen before (ids are kept in dreamops's database, so replays are refused across
restarts and API workers). The HTTP route lives in the REST API; this module is the whole check.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field

from dreamops.registry.audit import AliasMove, AuditLog
from dreamops.registry.promotion import Promotions

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"


class WebhookRejected(Exception):
    """The delivery is not accepted; `status` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 401):
        super().__init__(reason)
        self.reason, self.status = reason, status


def sign(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, max_age_s: int, now: float | None = None) -> str:
    """Check signature and freshness; returns the delivery id. Raises WebhookRejected."""
    h = {k.lower(): v for k, v in headers.items()}
    delivery_id, timestamp, signature = h.get(DELIVERY_HEADER), h.get(TIMESTAMP_HEADER), h.get(SIGNATURE_HEADER)
    if not (delivery_id and timestamp and signature):
        raise WebhookRejected("missing X-MLflow-Signature, X-MLflow-Timestamp or X-MLflow-Delivery-Id")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRejected(f"bad timestamp {timestamp!r}") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("body is not UTF-8", 400) from None
    expected = sign(secret, delivery_id, timestamp, text)
    # the header may carry several space-separated signatures (secret rotation)
    if not any(hmac.compare_digest(expected, s) for s in signature.split()):
        raise WebhookRejected("signature does not match")
    age = (time.time() if now is None else now) - sent_at
    if abs(age) > max_age_s:  # also refuses timestamps from the future
        raise WebhookRejected(f"timestamp is {age:.0f} s old (limit {max_age_s} s)")
    return delivery_id


@dataclass
class WebhookResult:
    delivery_id: str
    entity: str
    action: str
    model: str | None
    moves: list[AliasMove] = field(default_factory=list)


class WebhookReceiver:
    """verify -> replay check -> promotion rules. One per API process."""

    def __init__(self, secret: str, audit: AuditLog, promotions: Promotions, max_age_s: int = 300):
        if not secret:
            raise ValueError("a webhook secret is required (DREAMOPS_WEBHOOK_SECRET)")
        self.secret, self.audit, self.promotions, self.max_age_s = secret, audit, promotions, max_age_s

    def handle(self, headers: dict[str, str], body: bytes, now: float | None = None) -> WebhookResult:
        delivery_id = verify(self.secret, headers, body, self.max_age_s, now)
        try:
            event = json.loads(body)
            entity, action, data = event["entity"], event["action"], event["data"]
            if not (isinstance(entity, str) and isinstance(action, str) and isinstance(data, dict)):
                raise TypeError("entity and action must be strings, data an object")
            model = data.get("name")
            if model is not None and not isinstance(model, str):
                raise TypeError("data.name must be a string")
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected("body is not an MLflow webhook event", 400) from None
        # recorded only after the signature held: forged ids cannot block real deliveries
        if not self.audit.first_delivery(delivery_id):
            raise WebhookRejected(f"delivery {delivery_id} was already received (replay)", 409)
        result = WebhookResult(delivery_id, entity, action, model)
        if entity == "model_version_alias" and result.model:
            # act on MLflow's current aliases, not on the payload: deliveries can arrive out of order
            result.moves = self.promotions.reconcile(result.model, source="webhook", actor="mlflow")
        return result

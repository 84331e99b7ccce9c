"""Webhook deliveries: MLflow's own signer produces what we accept; forged, stale and replayed
deliveries are rejected; an accepted alias event goes through the promotion rules."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from dreamops.registry.webhooks import WebhookReceiver, WebhookRejected, sign, verify
from tests.registry.conftest import MODEL, add_version, alias

SECRET = "s3cret-for-tests"


def delivery(event: dict, secret: str = SECRET, sent_at: float | None = None, delivery_id: str | None = None):
    body = json.dumps(event)
    delivery_id = delivery_id or str(uuid.uuid4())
    ts = str(int(time.time() if sent_at is None else sent_at))
    headers = {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": ts,
               "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, ts, body),
               "Content-Type": "application/json"}
    return headers, body.encode()


ALIAS_EVENT = {"entity": "model_version_alias", "action": "created", "timestamp": "2026-11-21T10:00:00Z",
               "data": {"name": MODEL, "alias": "production", "version": "2"}}


def test_our_signature_is_mlflows():
    assert sign(SECRET, "d1", "1700000000", "{}") == _generate_hmac_signature(SECRET, "d1", "1700000000", "{}")


def test_signed_delivery_is_accepted():
    headers, body = delivery(ALIAS_EVENT)
    assert verify(SECRET, headers, body, max_age_s=300) == headers["X-MLflow-Delivery-Id"]


@pytest.mark.parametrize("case", ["wrong secret", "tampered body", "stale", "future", "no signature", "bad timestamp"])
def test_bad_deliveries_are_rejected(case):
    # stale and future are 10 s beyond the limit: the timestamp header holds whole seconds
    headers, body = delivery(ALIAS_EVENT, secret="other" if case == "wrong secret" else SECRET,
                             sent_at=time.time() - 310 if case == "stale" else
                             time.time() + 310 if case == "future" else None)
    if case == "tampered body":
        body = body.replace(b'"version": "2"', b'"version": "3"')
    if case == "no signature":
        del headers["X-MLflow-Signature"]
    if case == "bad timestamp":
        headers["X-MLflow-Timestamp"] = "yesterday"
    with pytest.raises(WebhookRejected) as err:
        verify(SECRET, headers, body, max_age_s=300)
    assert err.value.status == 401


def test_replayed_delivery_is_rejected_and_alias_events_apply_the_rules(registry):
    promotions, client = registry
    good, failed = add_version(), add_version(status="failed", gates={"gate.vae_recon": "failed: x"})
    promotions.promote(MODEL, good, "production")
    receiver = WebhookReceiver(SECRET, promotions.audit, promotions, max_age_s=300)

    client.set_registered_model_alias(MODEL, "production", failed)  # an engineer in the MLflow UI
    headers, body = delivery({**ALIAS_EVENT, "data": {"name": MODEL, "alias": "production", "version": failed}})
    result = receiver.handle(headers, body)
    assert [(m.alias, m.outcome, m.to_version) for m in result.moves] == [("production", "reverted", good)]
    assert alias(client, "production") == good

    with pytest.raises(WebhookRejected, match="replay") as err:
        receiver.handle(headers, body)
    assert err.value.status == 409
    # a forged copy with a fresh id is not recorded as seen: the real delivery still goes through
    forged_headers, _ = delivery(ALIAS_EVENT, secret="attacker", delivery_id="fresh-id")
    with pytest.raises(WebhookRejected, match="signature"):
        receiver.handle(forged_headers, body)
    real_headers, real_body = delivery({"entity": "model_version", "action": "created",
                                        "data": {"name": MODEL, "version": good}}, delivery_id="fresh-id")
    assert receiver.handle(real_headers, real_body).moves == []

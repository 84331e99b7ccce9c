"""The promotion rules, for every path: promote, rollback, and moves made outside dreamops."""
from __future__ import annotations

import pytest

from dreamops.flows.cli import main
from dreamops.registry.errors import PromotionRefusedError
from tests.registry.conftest import MODEL, add_version, alias


def test_production_move_sends_previous_holder_to_last_known_good(registry):
    promotions, client = registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production", reason="first release")
    assert alias(client, "production") == v1 and alias(client, "last-known-good") is None
    moves = promotions.promote(MODEL, v2, "production", reason="better")
    assert [(m.alias, m.from_version, m.to_version) for m in moves] == [("production", v1, v2),
                                                                         ("last-known-good", None, v1)]
    assert alias(client, "production") == v2 and alias(client, "last-known-good") == v1
    assert promotions.promote(MODEL, v2, "production") == []  # already there: nothing moves, nothing logged
    assert len(promotions.audit.history(MODEL)) == 3


@pytest.mark.parametrize("target", ["staging", "canary", "production"])
def test_failed_or_tampered_versions_cannot_be_promoted(registry, target):
    promotions, client = registry
    good = add_version()
    promotions.promote(MODEL, good, target)
    failed = add_version(status="failed", gates={"gate.vae_recon": "failed: 0.2 >= 0.02"})
    missing = add_version(status="pending", gates={})
    # validation_status edited to passed by hand while a gate tag still says failed
    tampered = add_version(status="passed", gates={"gate.vae_recon": "failed: 0.2 >= 0.02"})
    for version, why in ((failed, "validation_status=failed"), (missing, "validation_status=pending"),
                         (tampered, "gates not passed: gate.vae_recon")):
        with pytest.raises(PromotionRefusedError, match=why):
            promotions.promote(MODEL, version, target, source="api")
    assert alias(client, target) == good
    refused = [m for m in promotions.audit.history(MODEL) if m.outcome == "refused"]
    assert [m.to_version for m in refused] == [tampered, missing, failed]
    assert all(m.actor == "alice" and m.source == "api" and m.from_version == good for m in refused)


def test_last_known_good_is_not_promoted_by_hand(registry):
    promotions, _ = registry
    v = add_version()
    with pytest.raises(ValueError, match="last-known-good follows production"):
        promotions.promote(MODEL, v, "last-known-good")


def test_rollback_restores_last_known_good_in_one_step(registry):
    promotions, client = registry
    v1, v2, v3 = add_version(), add_version(), add_version()
    for v in (v1, v2, v3):
        promotions.promote(MODEL, v, "production")
    assert alias(client, "last-known-good") == v2
    moves = promotions.rollback(MODEL, reason="canary error rate")
    assert alias(client, "production") == v2
    assert alias(client, "last-known-good") == v1  # the holder before v2; v3 is not "good"
    assert "rolled_back_at" in client.get_model_version(MODEL, v3).tags
    assert moves[0].reason == "canary error rate" and moves[0].from_version == v3
    promotions.rollback(MODEL)
    assert alias(client, "production") == v1 and alias(client, "last-known-good") is None
    with pytest.raises(PromotionRefusedError, match="no last-known-good"):
        promotions.rollback(MODEL)


def test_rollback_to_a_named_version_obeys_the_rules(registry):
    promotions, client = registry
    v1, bad = add_version(), add_version(status="failed", gates={"gate.latency_p99": "failed: 120 >= 80"})
    v3 = add_version()
    promotions.promote(MODEL, v3, "production")
    with pytest.raises(PromotionRefusedError, match="validation_status=failed"):
        promotions.rollback(MODEL, to=bad)
    with pytest.raises(PromotionRefusedError, match="already in production"):
        promotions.rollback(MODEL, to=v3)
    promotions.rollback(MODEL, to=v1)
    assert alias(client, "production") == v1


def test_outside_move_of_a_failed_version_is_reverted(registry):
    promotions, client = registry
    good, failed = add_version(), add_version(status="failed", gates={"gate.vae_recon": "failed: x"})
    promotions.promote(MODEL, good, "production")
    client.set_registered_model_alias(MODEL, "production", failed)  # what the MLflow UI does
    moves = promotions.reconcile(MODEL)
    assert [(m.alias, m.from_version, m.to_version, m.outcome) for m in moves] == \
        [("production", failed, good, "reverted")]
    assert alias(client, "production") == good
    client.set_registered_model_alias(MODEL, "staging", failed)  # no previous holder: the alias goes
    promotions.reconcile(MODEL)
    assert alias(client, "staging") is None
    assert promotions.reconcile(MODEL) == []  # idempotent


def test_outside_production_move_is_completed_with_last_known_good(registry):
    promotions, client = registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "production")
    client.set_registered_model_alias(MODEL, "production", v2)
    moves = promotions.reconcile(MODEL, source="webhook")
    assert [(m.alias, m.to_version, m.outcome) for m in moves] == [("production", v2, "applied"),
                                                                   ("last-known-good", v1, "applied")]
    assert alias(client, "last-known-good") == v1 and "outside dreamops" in moves[0].reason
    assert promotions.reconcile(MODEL) == []


def test_cli_promote_rollback_history(registry, capsys):
    promotions, client = registry
    v1, v2 = add_version(), add_version()
    failed = add_version(status="failed", gates={"gate.vae_recon": "failed: x"})
    assert main(["promote", v1, "--to", "production", "--reason", "release 1"]) == 0
    assert main(["promote", v2, "--to", "production"]) == 0
    assert main(["promote", failed, "--to", "canary"]) == 1
    assert "refused: version 3" in capsys.readouterr().err
    assert main(["rollback", MODEL]) == 0
    assert "production is version 1" in capsys.readouterr().out
    assert alias(client, "production") == v1
    assert main(["promote", "9", "--to", "staging"]) == 2  # no such version: bad input
    assert main(["history", MODEL]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # newest first: rollback (lkg 1 -> none left, production 2 -> 1), refused canary,
    # promote 2 (lkg -> 1, production 1 -> 2), promote 1
    assert [line.split()[3] for line in lines] == ["last-known-good", "production", "canary", "last-known-good",
                                                   "production", "production"]
    assert "release 1" in lines[-1] and "refused" in lines[2] and "rollback from 2" in lines[1]
    assert main(["versions", MODEL]) == 0
    out = capsys.readouterr().out
    assert "production" in out and "failed" in out


def test_reconciler_loop_reverts_a_ui_move_within_its_interval(registry):
    import threading
    import time

    from dreamops.registry.promotion import reconcile_forever

    promotions, client = registry
    good, failed = add_version(), add_version(status="failed", gates={"gate.vae_recon": "failed: x"})
    promotions.promote(MODEL, good, "canary")
    stop, seen = threading.Event(), []
    loop = threading.Thread(target=reconcile_forever, args=(promotions, None, 0.2, seen.extend, stop))
    loop.start()
    try:
        client.set_registered_model_alias(MODEL, "canary", failed)
        deadline = time.time() + 20
        while alias(client, "canary") != good and time.time() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(10)
    assert alias(client, "canary") == good
    assert [(m.alias, m.outcome) for m in seen] == [("canary", "reverted")]


def test_a_reconciler_in_another_process_never_records_our_moves_a_second_time(registry, dreamops_home):
    """What a webhook delivered mid-move did: MLflow shows the new alias before its audit row is
    committed, and the receiver logged the move again as made outside dreamops. Moves hold the
    promotions lock until their row commits, and the reconciler waits for it."""
    import os
    import subprocess
    import sys
    import time

    from dreamops.flows.up import stop_process

    MOVES = 40  # noqa: N806  (the watcher polls every 10 ms: a pause in which a waiting move gets the lock)
    promotions, _ = registry
    v1, v2 = add_version(), add_version()
    promotions.promote(MODEL, v1, "staging")
    env = {**os.environ, "DREAMOPS_HOME": str(dreamops_home)}
    watcher = subprocess.Popen([sys.executable, "-m", "dreamops.flows.cli", "reconcile", "--watch", "--interval", "0.01",
                                "--model", MODEL], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(8)  # the watcher is polling
        assert watcher.poll() is None
        for i in range(MOVES):
            promotions.promote(MODEL, (v2, v1)[i % 2], "staging", reason=f"move {i}")
    finally:
        stop_process(watcher, 10)
    staging = promotions.audit.history(MODEL, alias="staging")
    assert [m.reason for m in reversed(staging)] == ["promoted to staging"] + [f"move {i}" for i in range(MOVES)], \
        watcher.stdout.read()

"""A candidate worse than production is registered but refused: validation_status=failed, no
staging alias, and the registry will not give it canary or production."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

from dreamops.flows.cli import main
from dreamops.registry import store

pytestmark = pytest.mark.e2e


def test_worse_candidate_is_refused_against_production(prefect_server, dreamops_home, capsys):
    assert main(["train", "--profile", "smoke", "--set", "vae.epochs=8", "--no-progress"]) == 0
    assert "every gate passed: alias 'staging'" in capsys.readouterr().out
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("carracing-vmc", "staging").version) == "1"
    store.set_alias("carracing-vmc", "1", "production")

    # deliberately worse: V barely trains (learning rate 1e-7), same data
    assert main(["train", "--profile", "smoke", "--set", "vae.lr=1e-7", "--no-progress"]) == 0
    assert "validation_status=failed (vae_recon_vs_production" in capsys.readouterr().out
    v2 = client.get_model_version("carracing-vmc", "2")
    assert v2.tags["validation_status"] == "failed"
    assert v2.tags["gate.vae_recon_vs_production"].startswith("failed: ")
    gate_tags = {k for k in v2.tags if k.startswith("gate.")}
    assert {"gate.vae_recon", "gate.vae_kl", "gate.mdn_nll", "gate.controller_dream_reward",
            "gate.controller_real_reward", "gate.controller_collisions", "gate.latency_p99",
            "gate.mdn_loglik_vs_production"} <= gate_tags
    assert "gate/vae_recon_vs_production" in client.get_run(v2.run_id).data.metrics
    assert str(client.get_model_version_by_alias("carracing-vmc", "staging").version) == "1"
    for alias in ("staging", "canary", "production"):
        with pytest.raises(store.PromotionRefusedError, match="validation_status=failed"):
            store.set_alias("carracing-vmc", "2", alias)
    assert str(client.get_model_version_by_alias("carracing-vmc", "production").version) == "1"

"""A candidate worse than production is registered but refused: validation_status=failed, no
staging alias, and the registry will not give it canary or production."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

from dreamops.flows.cli import main
from dreamops.registry.errors import PromotionRefusedError
from dreamops.registry.promotion import Promotions
from dreamops.settings import get_settings

pytestmark = pytest.mark.e2e


def test_worse_candidate_is_refused_against_production(prefect_server, dreamops_home, capsys):
    assert main(["train", "--profile", "smoke", "--set", "vae.epochs=8", "--no-progress"]) == 0
    assert "every gate passed: alias 'staging'" in capsys.readouterr().out
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("carracing-vmc", "staging").version) == "1"
    assert main(["promote", "1", "--to", "production", "--reason", "first release"]) == 0

    # deliberately worse: V barely trains (learning rate 1e-7), same data
    assert main(["train", "--profile", "smoke", "--set", "vae.lr=1e-7", "--no-progress"]) == 0
    assert "validation_status=failed (vae_recon_vs_production" in capsys.readouterr().out
    v2 = client.get_model_version("carracing-vmc", "2")
    assert v2.tags["validation_status"] == "failed"
    assert v2.tags["gate.vae_recon_vs_production"].startswith("failed: ")
    gate_tags = {k for k in v2.tags if k.startswith("gate.")}
    assert {"gate.vae_recon", "gate.vae_kl", "gate.mdn_nll", "gate.controller_dream_reward",
            "gate.controller_real_reward", "gate.controller_collisions", "gate.latency_p99",
            "gate.mdn_loglik_vs_production", "gate.mdn_fidelity"} <= gate_tags
    assert "gate/vae_recon_vs_production" in client.get_run(v2.run_id).data.metrics
    assert str(client.get_model_version_by_alias("carracing-vmc", "staging").version) == "1"
    assert v2.tags["semver"] == "1.0.1"  # same architecture, same (cached) data: a patch
    capsys.readouterr()
    for alias in ("staging", "canary", "production"):
        assert main(["promote", "2", "--to", alias]) == 1
        assert "validation_status=failed" in capsys.readouterr().err
    with pytest.raises(PromotionRefusedError, match="validation_status=failed"):
        Promotions.from_settings(get_settings()).promote("carracing-vmc", "2", "production", source="api")
    assert str(client.get_model_version_by_alias("carracing-vmc", "production").version) == "1"

    assert main(["history"]) == 0
    history = capsys.readouterr().out.splitlines()
    assert len([line for line in history if " refused " in line]) == 4
    assert any("production" in line and "-> 1" in line and "first release" in line for line in history)
    assert any("staging" in line and "(flow)" in line for line in history)

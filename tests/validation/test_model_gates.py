import pytest

from dreamops.validation.model_gates import ModelGateThresholds, evaluate_model_gates

T = ModelGateThresholds(vae_recon_max=60, vae_kl_min=5, vae_kl_max=60, mdn_nll_max=30, dream_reward_min=50,
                        real_reward_min=150, off_track_per_episode_max=4)
GOOD = {"vae_recon": 35.0, "vae_kl": 19.0, "mdn_nll": 17.0, "dream_reward": 119.0, "real_reward": 275.0,
        "off_track_per_episode": 3.1, "latency_p99_ms": 4.0}


def _by_name(gates):
    return {g.name: g for g in gates}


def test_a_good_candidate_without_production_passes_every_fixed_gate():
    gates = _by_name(evaluate_model_gates(GOOD, T))
    assert set(gates) == {"vae_recon", "vae_kl", "mdn_nll", "controller_dream_reward", "controller_real_reward",
                          "controller_collisions", "latency_p99"}
    assert all(g.passed for g in gates.values())
    assert gates["controller_real_reward"].tag == "passed: 275 vs > 150"


@pytest.mark.parametrize("key,value,gate", [
    ("vae_recon", 61.0, "vae_recon"), ("vae_kl", 1.0, "vae_kl"), ("vae_kl", 70.0, "vae_kl"),
    ("mdn_nll", 31.0, "mdn_nll"), ("dream_reward", 10.0, "controller_dream_reward"),
    ("real_reward", 149.0, "controller_real_reward"), ("off_track_per_episode", 4.5, "controller_collisions"),
    ("latency_p99_ms", 95.0, "latency_p99"),
])
def test_each_fixed_threshold_fails_its_gate(key, value, gate):
    gates = _by_name(evaluate_model_gates({**GOOD, key: value}, T))
    assert [g.name for g in gates.values() if not g.passed] == [gate]
    assert gates[gate].tag.startswith("failed: ")


def test_reconstruction_is_compared_with_production():
    prod = {"vae_recon": 20.0, "mdn_nll": 17.0}
    gates = _by_name(evaluate_model_gates(GOOD, T, prod))  # 35 >= 1.5 x 20
    assert not gates["vae_recon_vs_production"].passed
    assert gates["vae_recon_vs_production"].tag == "failed: 35 vs < 1.5 x production's 20"
    assert _by_name(evaluate_model_gates({**GOOD, "vae_recon": 29.9}, T, prod))["vae_recon_vs_production"].passed


@pytest.mark.parametrize("prod_nll,cand_nll,ok", [
    (17.0, 18.6, True),     # LL -18.6 >= -17 - 1.7 = -18.7
    (17.0, 18.8, False),    # 10.6% worse
    (-20.0, -18.5, True),   # LL 18.5 >= 0.9 * 20 = 18
    (-20.0, -17.5, False),  # LL 17.5 < 18
])
def test_log_likelihood_ratio_for_positive_and_negative_nll(prod_nll, cand_nll, ok):
    gates = _by_name(evaluate_model_gates({**GOOD, "mdn_nll": cand_nll}, T, {"vae_recon": 35.0, "mdn_nll": prod_nll}))
    assert gates["mdn_loglik_vs_production"].passed is ok

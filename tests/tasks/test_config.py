import pytest

from dreamops.tasks.config import PROFILES, parse_override, resolve_config


def test_profiles_resolve_and_full_is_the_paper_scale():
    for name in PROFILES:
        assert resolve_config(name).profile == name
    full = resolve_config("full")
    assert (full.collect.episodes, full.cma.population, full.cma.rollouts) == (10_000, 64, 16)


def test_standard_fits_its_real_frame_budget_and_gates_at_700():
    std = resolve_config("standard")
    assert std.rounds > 1 and std.max_real_frames() + std.max_validation_frames() <= 200_000
    assert std.eval.episodes == 100 and std.gate.model.real_reward_min == 700
    quick = resolve_config("quick")
    assert quick.max_real_frames() == (32 + 7 * 16) * 250 * 4
    assert quick.max_validation_frames() == 8 * 3 * 8 * 1000  # rounds x checkpoints x episodes x frames
    assert resolve_config("quick", {"rounds": 1}).max_validation_frames() == 0


def test_smoke_model_gates_pass_whatever_a_finished_run_measures():
    """smoke proves the wiring: its version must reach `staging` whatever a 1-epoch model scores and
    however slow a shared CI runner times its step (stop 37's CI smoke version failed a gate; latency
    was the one threshold smoke had left at quick's 80 ms)."""
    from dreamops.validation.model_gates import evaluate_model_gates

    worst = {"vae_recon": 5e3, "vae_kl": 0.0, "mdn_nll": 5e3, "dream_reward": -500.0, "real_reward": -300.0,
             "off_track_per_episode": 60.0, "latency_p99_ms": 2_000.0, "mdn_fidelity_ratio": 50.0,
             "mdn_fidelity_horizon": 5}
    gates = evaluate_model_gates(worst, resolve_config("smoke").gate.model)
    assert [g.name for g in gates if not g.passed] == []
    assert not any(g.passed for g in evaluate_model_gates(worst, resolve_config("quick").gate.model))  # real bars


def test_quick_trains_c_by_actor_critic_and_the_others_by_cma_es():
    # measured over the whole quick profile (docs/results, session 21); a run can still ask for CMA-ES
    assert resolve_config("quick").controller_trainer == "actor_critic"
    assert resolve_config("quick", {"controller_trainer": "cma"}).controller_trainer == "cma"
    assert {resolve_config(p).controller_trainer for p in ("smoke", "standard", "gpu", "full")} == {"cma"}


def test_warm_actor_critic_rounds_use_their_own_updates_and_actor_learning_rate():
    cfg = resolve_config("quick", {"ac.round_actor_lr": 1e-4, "ac.round_updates": 200})
    r0, r1 = cfg.for_round(0), cfg.for_round(1)
    assert (r0.ac.actor_lr, r0.ac.updates) == (cfg.ac.actor_lr, cfg.ac.updates)
    assert (r1.ac.actor_lr, r1.ac.updates) == (1e-4, 200)
    # unset, warm rounds keep the actor's learning rate, whatever it was set to
    assert resolve_config("quick", {"ac.actor_lr": 3e-4}).for_round(3).ac.actor_lr == 3e-4
    with pytest.raises(ValueError, match="round_actor_lr"):
        resolve_config("quick", {"ac.round_actor_lr": 0.0})


def test_later_rounds_fine_tune_and_training_seeds_reach_cma_es():
    cfg = resolve_config("quick")
    r0, r1 = cfg.for_round(0), cfg.for_round(1)
    assert (r0.vae.epochs, r0.mdn.epochs, r0.cma.generations) == (cfg.vae.epochs, cfg.mdn.epochs, cfg.cma.generations)
    assert (r1.vae.epochs, r1.mdn.epochs, r1.cma.generations) == (0, cfg.mdn.round_epochs, cfg.cma.round_generations)
    assert r1.cma.sigma0 == cfg.cma.round_sigma0 and r0.cma.seed != r1.cma.seed
    assert resolve_config("quick", {"seed": 1}).for_round(0).cma.seed != r0.cma.seed
    assert cfg.cma.generations == resolve_config("quick").cma.generations  # for_round does not edit the config


def test_overrides_apply_with_types():
    cfg = resolve_config("smoke", dict([parse_override("cma.generations=7"), parse_override("vae.lr=3e-4")]))
    assert cfg.cma.generations == 7 and cfg.vae.lr == pytest.approx(3e-4)
    assert isinstance(cfg.vae.lr, float)


@pytest.mark.parametrize("key,value,message", [
    ("cma.population", 1, "cma.population"),
    ("vae.epochs", -1, "vae.epochs"),
    ("vae.holdout_fraction", 1.5, "vae.holdout_fraction"),
    ("cma.generations", 2.5, "cma.generations"),
    ("cma.nope", 1, "unknown config key 'cma.nope'"),
    ("collect.policy_mix", {"teleport": 1.0}, "collect.policy_mix"),
    ("eval.compare_baselines", 1, "eval.compare_baselines"),
    ("gate.data.max_corrupt_frame_fraction", 1.5, "gate.data.max_corrupt_frame_fraction"),
    ("gate.model.vae_kl_min", 2e6, "gate.model.vae_kl_min"),  # smoke's vae_kl_max is 1e6
    ("gate.model.mdn_fidelity_horizon", 0, "gate.model.mdn_fidelity_horizon"),
    ("rounds", 0, "rounds must be >= 1"),
    ("collect.round_policy_mix", {"controller": -1.0}, "collect.round_policy_mix"),
    ("collect.round_policy_mix", {"autopilot": 1.0}, "collect.round_policy_mix"),
    ("collect.controller_noise", -0.1, "collect.controller_noise"),
    ("collect.episodes_per_round", 0, "collect.episodes_per_round"),
    ("cma.dream_dropout", 1.0, "cma.dream_dropout"),
    ("mdn.dropout", -0.1, "mdn.dropout"),
    ("cma.done_mode", "never", "cma.done_mode"),
])
def test_bad_values_raise_naming_the_key(key, value, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        resolve_config("smoke", {key: value})


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        resolve_config("huge")


def test_resolved_config_round_trips_through_yaml():
    import yaml

    cfg = resolve_config("quick")
    assert yaml.safe_load(cfg.to_yaml()) == cfg.to_dict()
    assert cfg.flat()["cma.temperature"] == cfg.cma.temperature


def test_round_temperature_applies_to_later_rounds_only():
    cfg = resolve_config("quick", {"cma.round_temperature": 1.15})
    assert cfg.for_round(0).cma.temperature == cfg.cma.temperature == 1.45
    assert cfg.for_round(1).cma.temperature == 1.15
    assert resolve_config("quick").for_round(2).cma.temperature == 1.45  # unset: every round the same
    for bad in ("hot", 0, -1.0):
        with pytest.raises(ValueError, match="cma.round_temperature"):
            resolve_config("quick", {"cma.round_temperature": bad})


def test_validation_seeds_may_not_overlap_evaluation_or_collection_seeds():
    with pytest.raises(ValueError, match="overlap the evaluation seeds"):
        resolve_config("quick", {"eval.validation_seed": 100_004})
    with pytest.raises(ValueError, match="overlap the collection seeds"):
        resolve_config("quick", {"eval.validation_seed": 40})
    with pytest.raises(ValueError, match="eval.seed: seeds 10-17 overlap the collection seeds"):
        resolve_config("quick", {"eval.seed": 10})
    assert resolve_config("quick", {"eval.validation_seed": 60_000}).eval.validation_seed == 60_000


def test_validation_as_data_validates_on_fresh_seeds_each_round_within_the_budget():
    std = resolve_config("standard")
    assert std.collect.validation_as_data and std.max_total_frames() <= 200_000
    seen = [s for k in range(std.rounds) for s in std.validation_seeds(k)]
    assert len(seen) == len(set(seen)) == std.rounds * std.eval.round_episodes  # no round judged on trained tracks
    quick = resolve_config("quick")
    assert quick.validation_seeds(0) == quick.validation_seeds(5)  # without it every round meets the same tracks
    with pytest.raises(ValueError, match="eval.max_steps"):
        resolve_config("standard", {"eval.max_steps": 500})
    with pytest.raises(ValueError, match="collect.episodes_per_round"):
        resolve_config("quick", {"collect.episodes_per_round": 0})
    with pytest.raises(ValueError, match="overlap the evaluation seeds"):  # round 6's seeds reach the eval seeds
        resolve_config("standard", {"eval.validation_seed": 100_000 - std.eval.round_episodes * 2})

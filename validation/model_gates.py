"""Model gates: named checks of a candidate against the profile's fixed thresholds and, when a
version holds `production`, against production measured on the same held-out data.

M's comparison, stated precisely: the figure is the mean held-out log-likelihood per transition,
LL = -NLL (nats, summed over latent dims; it can be negative or positive). The candidate passes if
LL_cand >= LL_prod - (1 - ratio) * |LL_prod|, i.e. it may be at most 10% (ratio 0.9) of |LL_prod|
worse. For LL_prod > 0 this is exactly "LL_cand >= 90% of LL_prod"; for LL_prod < 0 (NLL > 0) a
plain 0.9 * LL_prod would demand the candidate be better, which is not what the rule means.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelGateThresholds:
    """Defaults are the `quick` profile's; profiles overlay their own."""

    vae_recon_max: float = 60.0
    """Held-out reconstruction error per frame (summed squared error, pixels in [0, 1]) below this."""
    vae_kl_min: float = 5.0
    """Held-out KL per frame in [vae_kl_min, vae_kl_max] (collapse below, no compression above)."""
    vae_kl_max: float = 60.0
    mdn_nll_max: float = 30.0
    """Held-out NLL per transition (nats, summed over latent dims) below this."""
    dream_reward_min: float = 50.0
    """Mean dream return of the final controller above this (seed, full scale: 800)."""
    real_reward_min: float = 150.0
    """Mean real-environment return above this (the rule-based baseline's level; seed: 800)."""
    off_track_per_episode_max: float = 4.0
    """Off-track events per real episode (CarRacing's collisions) at most this (seed: 0)."""
    latency_p99_ms_max: float = 80.0
    """Full V-M-C step p99 on one CPU thread below this."""
    vae_recon_vs_production: float = 1.5
    """Candidate reconstruction must be < this x production's on the same frames."""
    mdn_loglik_vs_production: float = 0.9
    """See the module docstring."""
    mdn_fidelity_vs_persistence_max: float = 1.0
    """M's open-loop latent error `mdn_fidelity_horizon` steps ahead over the error of assuming nothing
    changes, below this: M must predict better than a frozen frame."""
    mdn_fidelity_horizon: int = 5
    """The horizon (steps; the longest measured one up to it and up to the dreams' length) the
    `mdn_fidelity` gate judges. Not the dreams' 250 steps: the Ms of two `quick` versions that drive
    799 and 817 (100 episodes) are worse than persistence at 50 steps (ratios 1.07 and 1.33), as
    good at 15, and far better at 5 (0.29 and 0.40; a round-0 M 0.31): M's error far ahead does not
    decide whether its dreams train a good controller, so the gate stops a broken M, not a
    short-sighted one (docs/results, session 21)."""


@dataclass
class GateResult:
    name: str
    passed: bool
    figure: float
    threshold: str

    @property
    def tag(self) -> str:
        return f"{'passed' if self.passed else 'failed'}: {self.figure:.4g} vs {self.threshold}"


def _gate(name: str, figure: float, ok: bool, threshold: str) -> GateResult:
    return GateResult(name, bool(ok), float(figure), threshold)


def evaluate_model_gates(candidate: dict[str, float], thresholds: ModelGateThresholds,
                         production: dict[str, float] | None = None) -> list[GateResult]:
    """candidate/production keys: vae_recon, vae_kl, mdn_nll, dream_reward, real_reward,
    off_track_per_episode, latency_p99_ms, and optionally mdn_fidelity_ratio / mdn_fidelity_horizon
    (production: vae_recon and mdn_nll on the same data)."""
    t, c = thresholds, candidate
    gates = [
        _gate("vae_recon", c["vae_recon"], c["vae_recon"] < t.vae_recon_max, f"< {t.vae_recon_max:g}"),
        _gate("vae_kl", c["vae_kl"], t.vae_kl_min <= c["vae_kl"] <= t.vae_kl_max, f"in [{t.vae_kl_min:g}, {t.vae_kl_max:g}]"),
        _gate("mdn_nll", c["mdn_nll"], c["mdn_nll"] < t.mdn_nll_max, f"< {t.mdn_nll_max:g}"),
        _gate("controller_dream_reward", c["dream_reward"], c["dream_reward"] > t.dream_reward_min, f"> {t.dream_reward_min:g}"),
        _gate("controller_real_reward", c["real_reward"], c["real_reward"] > t.real_reward_min, f"> {t.real_reward_min:g}"),
        _gate("controller_collisions", c["off_track_per_episode"], c["off_track_per_episode"] <= t.off_track_per_episode_max,
              f"<= {t.off_track_per_episode_max:g} off-track events per episode"),
        _gate("latency_p99", c["latency_p99_ms"], c["latency_p99_ms"] < t.latency_p99_ms_max, f"< {t.latency_p99_ms_max:g} ms"),
    ]
    if "mdn_fidelity_ratio" in c:   # versions judged before rollout fidelity was measured have none
        k, ratio = int(c["mdn_fidelity_horizon"]), c["mdn_fidelity_ratio"]
        gates.append(_gate("mdn_fidelity", ratio, ratio < t.mdn_fidelity_vs_persistence_max,
                           f"< {t.mdn_fidelity_vs_persistence_max:g} x persistence's latent error at {k} steps"))
    if production is not None:
        limit = t.vae_recon_vs_production * production["vae_recon"]
        gates.append(_gate("vae_recon_vs_production", c["vae_recon"], c["vae_recon"] < limit,
                           f"< {t.vae_recon_vs_production:g} x production's {production['vae_recon']:.4g}"))
        ll_c, ll_p = -c["mdn_nll"], -production["mdn_nll"]
        floor = ll_p - (1 - t.mdn_loglik_vs_production) * abs(ll_p)
        gates.append(_gate("mdn_loglik_vs_production", ll_c, ll_c >= floor,
                           f">= {floor:.4g} (production LL {ll_p:.4g}, ratio {t.mdn_loglik_vs_production:g})"))
    return gates


@dataclass
class PickGateThresholds:
    """pick-vla's model gates. Defaults are the `quick` profile's; the seed's full-scale bars are in
    the `full` profile (novel >= 0.88, seen >= 0.95, chunk latency < 180 ms, cosine > 0.83)."""

    seen_success_min: float = 0.3
    """Pick success on objects of the training set, at least this."""
    novel_success_min: float = 0.3
    """Pick success on held-out shapes and colour-shape pairs, at least this."""
    collision_rate_max: float = 0.4
    """Share of episodes with a collision (both sets), at most this."""
    chunk_latency_p99_ms_max: float = 180.0
    """p99 of generating one action chunk on one CPU thread, below this."""
    wm_cosine_min: float = 0.8
    """Held-out one-step cosine of the RSSM's predicted vs encoded next latent, above this."""


def evaluate_pick_gates(candidate: dict[str, float], thresholds: PickGateThresholds) -> list[GateResult]:
    """candidate keys: seen_success, novel_success, collision_rate, chunk_latency_p99_ms, wm_cosine."""
    t, c = thresholds, candidate
    return [
        _gate("seen_success", c["seen_success"], c["seen_success"] >= t.seen_success_min, f">= {t.seen_success_min:g}"),
        _gate("novel_success", c["novel_success"], c["novel_success"] >= t.novel_success_min,
              f">= {t.novel_success_min:g}"),
        _gate("collision_rate", c["collision_rate"], c["collision_rate"] <= t.collision_rate_max,
              f"<= {t.collision_rate_max:g}"),
        _gate("chunk_latency_p99", c["chunk_latency_p99_ms"], c["chunk_latency_p99_ms"] < t.chunk_latency_p99_ms_max,
              f"< {t.chunk_latency_p99_ms_max:g} ms"),
        _gate("wm_cosine", c["wm_cosine"], c["wm_cosine"] > t.wm_cosine_min, f"> {t.wm_cosine_min:g}"),
    ]

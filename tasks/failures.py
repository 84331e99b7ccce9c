"""analyze_failures: categorise what went wrong in real evaluation episodes (seed 000, 3.7)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from dreamops.sim.rollout import Episode, count_off_track_events

STALL_SPEED = 1.0  # m/s-ish units of Box2D; the car at rest reads ~0
STALL_STEPS = 10
START_GRACE = 50  # the zoom-in at the start of every episode


def _runs(mask: np.ndarray, min_len: int) -> list[int]:
    """Start indices of runs of True at least min_len long."""
    starts, run = [], 0
    for t, m in enumerate(mask):
        run = run + 1 if m else 0
        if run == min_len:
            starts.append(t - min_len + 1)
    return starts


def analyze_failures(episodes: list[Episode], exploit_margin: float = 100.0) -> dict:
    """off_track: all wheels left the track; stall: speed under STALL_SPEED for > STALL_STEPS after the
    start; oscillation: steering changed sign > 5 times within 10 steps; model_exploitation: M expected
    (sum of its predicted rewards) more than exploit_margin above the real return."""
    events: list[dict] = []
    for i, ep in enumerate(episodes):
        on = np.concatenate([[True], ep.on_track])
        for t in np.nonzero(on[:-1] & ~on[1:])[0]:
            events.append({"episode": i, "seed": ep.seed, "step": int(t), "type": "off_track"})
        slow = ep.speed < STALL_SPEED
        slow[:START_GRACE] = False
        for t in _runs(slow, STALL_STEPS + 1):
            events.append({"episode": i, "seed": ep.seed, "step": int(t), "type": "stall"})
        signs = np.sign(ep.actions[:, 0])
        flips = np.concatenate([[0], (signs[1:] * signs[:-1] < 0).astype(int)])
        window = np.convolve(flips, np.ones(10, int), mode="full")[: len(flips)]
        for t in _runs(window > 5, 1):
            events.append({"episode": i, "seed": ep.seed, "step": int(t), "type": "oscillation"})
        if "predicted_reward" in ep.extras:
            expected = float(ep.extras["predicted_reward"].sum())
            if expected - ep.total_reward > exploit_margin:
                events.append({"episode": i, "seed": ep.seed, "step": -1, "type": "model_exploitation",
                               "expected": round(expected, 1), "real": round(ep.total_reward, 1)})
    counts = Counter(e["type"] for e in events)
    n_steps = sum(ep.length for ep in episodes)
    return {
        "counts": {k: counts.get(k, 0) for k in ("off_track", "stall", "oscillation", "model_exploitation")},
        "episodes_with_failure": len({e["episode"] for e in events}),
        "episodes": len(episodes),
        "off_track_events_per_1k_steps": 1000.0 * sum(count_off_track_events(ep.on_track) for ep in episodes) / max(n_steps, 1),
        "off_track_step_fraction": float(np.mean(np.concatenate([~ep.on_track for ep in episodes]))) if episodes else 0.0,
        "events": events[:200],
    }

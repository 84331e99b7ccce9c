"""Pick cell: scripted expert vs the random-object (no-language) baseline on the seen and novel sets,
plus env throughput with and without the 64x64 camera."""
from __future__ import annotations

import time

import numpy as np

from dreamops.sim.pick import PickCell
from dreamops.sim.pick_expert import play_episodes


def _jerk(actions: np.ndarray) -> float:
    """Mean |third difference| of the executed xyz actions (normalised units per step^3)."""
    return float(np.abs(np.diff(actions[:, :3], n=3, axis=0)).mean()) if len(actions) > 3 else 0.0


def _steps_per_s(render: bool, steps: int = 200) -> float:
    env = PickCell(render=render)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4))
        if term or trunc:
            env.reset(seed=1)
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return rate


def run(episodes: int = 50, seed: int = 0) -> dict:
    rows = {}
    for object_set in ("seen", "novel"):
        for aim in ("target", "random"):
            t0 = time.perf_counter()
            res = play_episodes(episodes, object_set, seed=seed, aim=aim)
            wall = time.perf_counter() - t0
            multi = [r for r in res if r.n_objects >= 3]
            rows[(object_set, aim)] = {
                "success": np.mean([r.success for r in res]),
                "success_3plus": np.mean([r.success for r in multi]) if multi else float("nan"),
                "collision": np.mean([r.collision for r in res]),
                "cycle_time": np.mean([r.cycle_time for r in res if r.success]) if any(r.success for r in res)
                else float("nan"),
                "jerk": np.mean([_jerk(r.actions) for r in res]),
                "regrasps": sum(r.regrasps for r in res),
                "episodes_per_s": episodes / wall,
            }
    return {"rows": rows, "episodes": episodes,
            "steps_per_s_render": _steps_per_s(True), "steps_per_s_state": _steps_per_s(False)}


def main() -> dict:
    r = run()
    print(f"pick cell, {r['episodes']} seeded episodes per row (seeds 0-{r['episodes'] - 1}, 1-6 objects)")
    print(f"  {'set':6} {'policy':15} {'success':>8} {'(>=3 obj)':>9} {'collision':>9} {'cycle s':>8} "
          f"{'jerk':>6} {'regrasps':>8} {'eps/s':>6}")
    for (object_set, aim), m in r["rows"].items():
        name = "expert" if aim == "target" else "random-object"
        print(f"  {object_set:6} {name:15} {m['success']:8.1%} {m['success_3plus']:9.1%} {m['collision']:9.1%} "
              f"{m['cycle_time']:8.2f} {m['jerk']:6.3f} {m['regrasps']:8d} {m['episodes_per_s']:6.2f}")
    print(f"  env steps/s (random actions, 10 Hz control, 24 physics substeps): "
          f"{r['steps_per_s_render']:.0f} with 64x64 RGB-D, {r['steps_per_s_state']:.0f} state only")
    print("  cycle time: simulated seconds to a held lift, successful episodes only; jerk: mean |3rd diff| of xyz actions")
    return r


if __name__ == "__main__":
    main()

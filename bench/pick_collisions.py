"""Where a pick-vla version's collisions happen: the state at each episode's first collision.

    python bench/pick_collisions.py --model path/to/pick_vla.pt --object-set seen --episodes 100

Plays the version (its own execution) on the evaluation seeds 100000+ in one process and, at each
episode's first collision (sim.pick: over 20 N on anything but the named object), keeps what it hit
(sim.pick.COLLISION_KINDS), the step, whether the gripper was closed, the end effector's height and
its commanded height, the end effector's distance (in the table's plane) to the named object and to
the nearest other object before that step, and whether the episode still succeeded. A closed
gripper far from the named object and next to another one is a grasp of the wrong object; an open
one descending there is on its way to it. Results: bench/results/pick-collisions[-<tag>].json.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import EVAL_SEED, RESULTS, run_header  # noqa: E402

# objects stand >= 9.5 cm apart (centre to centre): 6 cm off the named one and within 7 cm of another
# is on the way to, or at, the other one
FAR_FROM_TARGET_CM, NEAR_OTHER_CM, AT_TARGET_CM = 6.0, 7.0, 2.5


def where(row: dict) -> str:
    """A first collision's place: wrong object (grasped or approached), at the target, or elsewhere."""
    if row["xy_to_target_cm"] >= FAR_FROM_TARGET_CM and row["xy_to_nearest_other_cm"] <= NEAR_OTHER_CM:
        return "closed on another object" if row["grip_closed"] else "descending by another object"
    if row["xy_to_target_cm"] <= AT_TARGET_CM:
        return "at the named object"
    return "elsewhere"


def first_collisions(model_path: Path, object_set: str, seeds: list[int]) -> list[dict]:
    import torch

    from dreamops.models.pick_vla import PickVLA, PickVLAPolicy
    from dreamops.sim.pick import PickCell, PickConfig

    torch.set_num_threads(1)
    policy = PickVLAPolicy(PickVLA.load(model_path))
    env = PickCell(PickConfig(object_set=object_set))
    rows = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            policy.reset(env.instruction, seed)
            row, done = None, False
            while not done:
                action = policy.act(obs)
                ee, named = env.ee_position()[:2].copy(), env.object_position(env.target_index)[:2].copy()
                others = [env.object_position(i)[:2] for i in range(len(env.objects)) if i != env.target_index]
                obs, _, terminated, truncated, info = env.step(action)
                if info["collision"] and row is None:
                    row = {"seed": seed, **env.first_collision,
                           "xy_to_target_cm": round(100 * float(np.linalg.norm(ee - named)), 1),
                           "xy_to_nearest_other_cm": round(100 * min((float(np.linalg.norm(ee - o)) for o in others),
                                                                     default=9.0), 1)}
                done = terminated or truncated
            if row is not None:
                rows.append({**row, "success": bool(info["success"]), "where": where(row)})
    finally:
        env.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--object-set", choices=("seen", "novel"), default="seen")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    seeds = list(range(EVAL_SEED, EVAL_SEED + args.episodes))
    rows = first_collisions(args.model, args.object_set, seeds)
    result = {"model": str(args.model), **run_header("bench/pick_collisions.py", argv), "object_set": args.object_set,
              "eval_seeds": [seeds[0], seeds[-1]], "collided": len(rows),
              "where": dict(Counter(r["where"] for r in rows)), "kinds": dict(Counter(r["kind"] for r in rows)),
              "first_collisions": rows}
    out = RESULTS / f"pick-collisions{'-' + args.tag if args.tag else ''}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"{r['seed']} step {r['step']:>2} {r['kind']:<14} grip {'closed' if r['grip_closed'] else 'open  '} "
              f"ee {100 * r['ee_z']:.1f} cm, to named {r['xy_to_target_cm']:>5} cm, to another "
              f"{r['xy_to_nearest_other_cm']:>5} cm: {r['where']}{' (succeeded)' if r['success'] else ''}")
    print(f"{len(rows)} of {len(seeds)} episodes collided: {result['where']}\n-> {out.relative_to(out.parents[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

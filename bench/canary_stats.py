"""The canary's two-proportion test of success (a family judged on success: pick-vla), by simulated
rollouts: for each baseline success rate and drop, the sample size per arm the test asks for (power
0.8 at the stage's Bonferroni alpha), then the share of rollouts it rolls back when the canary is
as good (false alarms, want <= alpha) and when it is worse by the drop (power, want ~0.8).

    python bench/canary_stats.py [--trials 4000] [--stages 3]
-> bench/results/canary-two-proportion.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import RESULTS, run_header  # noqa: E402

CASES = [(0.9, 0.10), (0.9, 0.20), (0.8, 0.10), (0.6, 0.10), (0.5, 0.20)]   # (baseline rate, drop)


def rollback_rate(n: int, canary_rate: float, baseline_rate: float, alpha: float, trials: int,
                  rng: np.random.Generator) -> float:
    from dreamops.api.stats import Sample, compare_proportions

    canary, baseline = rng.binomial(n, canary_rate, trials), rng.binomial(n, baseline_rate, trials)
    return float(np.mean([compare_proportions(Sample(n, c / n, float("nan")), Sample(n, b / n, float("nan")),
                                              alpha).regression for c, b in zip(canary, baseline)]))


def main(argv: list[str] | None = None) -> int:
    from dreamops.api.stats import required_sample_size_proportions

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4000, help="simulated rollouts per case and arm")
    p.add_argument("--stages", type=int, default=3, help="canary stages (alpha is split over them)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    alpha, power = 0.05 / args.stages, 0.8
    rng = np.random.default_rng(args.seed)
    rows = []
    for rate, drop in CASES:
        n = required_sample_size_proportions(rate, drop, alpha, power)
        row = {"baseline_rate": rate, "drop": drop, "alpha": round(alpha, 4), "n_per_arm": n,
               "false_alarms": rollback_rate(n, rate, rate, alpha, args.trials, rng),
               "power": rollback_rate(n, rate - drop, rate, alpha, args.trials, rng)}
        rows.append(row)
        print(f"baseline {rate:.0%} drop {drop:.0%}: n {n} per arm, false alarms {row['false_alarms']:.2%} "
              f"(alpha {alpha:.2%}), power {row['power']:.1%} (wanted {power:.0%})", flush=True)
    out = RESULTS / "canary-two-proportion.json"
    out.write_text(json.dumps({**run_header("bench/canary_stats.py", argv), "trials": args.trials,
                               "stages": args.stages, "cases": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to a good model: wall time and real frames until a run first reaches given returns.

    python bench/time_to_quality.py --profile quick --train-seeds 0             # trains, then reports
    python bench/time_to_quality.py --from bench/results/quality-carracing-vmc-quick.json

What a user pays for is the wall time from `make run` to a version that drives well. Every round
of a multi-round run logs its seconds per stage (tasks/timing.py) and plays validation episodes,
so the run's own learning curve says when it first reached each threshold: the table gives, per
training seed and threshold, the first round whose validation return reached it, the wall time
and the real frames (training data + validation episodes) spent by the end of that round, and
where that time went per stage. The judge is the round's validation return (`eval.round_episodes`
episodes), so a threshold "reached" is a noisy event; the shipped version's 100-episode figure is
printed next to it. Written to bench/results/time-to-quality[-<tag>].json with a picture.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402

from dreamops.tasks.plots import played_frames  # noqa: E402

ROOT, RESULTS = quality.ROOT, quality.RESULTS
THRESHOLDS = (300.0, 500.0, 800.0)


def reached(rounds: list[dict], threshold: float) -> dict | None:
    """The first round whose validation return reached `threshold`, with the time, frames and
    seconds per stage spent up to the end of it; None if no round did."""
    if any("wall_s" not in p for p in rounds):
        raise ValueError("these rounds carry no timings (run by code older than tasks/timing.py); train again")
    stages: dict[str, float] = {}
    for p in rounds:
        for name, s in p["stage_s"].items():
            stages[name] = round(stages.get(name, 0.0) + s, 1)
        if p["real_return"] >= threshold:
            return {"round": p["round"], "wall_s": p["wall_s"], "validation_return": round(p["real_return"], 1),
                    "data_frames": p["real_frames"], "validation_frames": p["validation_frames"],
                    "real_frames": played_frames(p), "stage_s": stages}
    return None


def seed_report(row: dict, thresholds: list[float]) -> dict:
    rounds = row.get("rounds")
    if not rounds:
        raise ValueError(f"training seed {row['train_seed']}: a one-round run has no learning curve to time")
    return {"train_seed": row["train_seed"], "final_mean": row["mean"], "final_episodes": row["episodes"],
            "wall_s": row["wall_s"], "rounds": len(rounds),
            "reached": {str(t): reached(rounds, t) for t in thresholds},
            "stage_s_total": {k: round(sum(p["stage_s"].get(k, 0.0) for p in rounds), 1)
                              for k in dict.fromkeys(k for p in rounds for k in p["stage_s"])},
            "curve": [{"round": p["round"], "wall_s": p["wall_s"], "validation_return": round(p["real_return"], 1),
                       "real_frames": played_frames(p)} for p in rounds]}


def print_table(reports: list[dict], thresholds: list[float]) -> None:
    print(f"{'seed':>5}{'return':>9}{'round':>7}{'wall min':>10}{'real frames':>13}   seconds per stage so far")
    for r in reports:
        for t in thresholds:
            hit = r["reached"][str(t)]
            if hit is None:
                print(f"{r['train_seed']:>5}{t:>9.0f}{'-':>7}{'not reached':>10}{'':>13}   "
                      f"(best validation {max(p['validation_return'] for p in r['curve']):.1f})")
                continue
            stages = ", ".join(f"{k} {v:.0f}" for k, v in hit["stage_s"].items())
            print(f"{r['train_seed']:>5}{t:>9.0f}{hit['round']:>7}{hit['wall_s'] / 60:>10.1f}"
                  f"{hit['real_frames']:>13,}   {stages}")
        total = ", ".join(f"{k} {v:.0f}" for k, v in r["stage_s_total"].items())
        print(f"{r['train_seed']:>5}  whole run {r['wall_s'] / 60:.1f} min (with the {r['final_episodes']}-episode "
              f"evaluation): {r['final_mean']:.1f}; rounds' stages: {total}")


def plot(reports: list[dict], thresholds: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in reports:
        ax.plot([p["wall_s"] / 60 for p in r["curve"]], [p["validation_return"] for p in r["curve"]], marker="o",
                label=f"training seed {r['train_seed']}")
    for t in thresholds:
        ax.axhline(t, ls=":", c="grey", lw=1)
    ax.set(xlabel="wall time (minutes, this machine)", ylabel="validation return (per round)",
           title="time to quality")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", type=Path, help="a bench/quality.py results file to report on "
                   "instead of training")
    p.add_argument("--profile", default="quick")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes of the shipped version")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    p.add_argument("--tag", help="suffix of the results file")
    args = p.parse_args(argv)
    if args.source is not None:
        source = json.loads(args.source.read_text())
        rows, profile, overrides = source["seeds"], source["profile"], source.get("overrides", [])
        commit, trained = source["commit"], f"{args.source} ({source['command']})"
    else:
        name = f"ttq{'-' + args.tag if args.tag else ''}"
        qargs = ["--profile", args.profile, "--train-seeds", *map(str, args.train_seeds), "--episodes",
                 str(args.episodes), "--tag", name, "--no-baselines",
                 *[a for s in args.overrides for a in ("--set", s)]]
        if quality.main(qargs) != 0:
            return 1
        source = json.loads((RESULTS / f"quality-carracing-vmc-{args.profile}-{name}.json").read_text())
        rows, profile, overrides, commit = source["seeds"], args.profile, args.overrides, source["commit"]
        trained = "this run"
    reports = [seed_report(r, args.thresholds) for r in rows]
    print(f"\ntime to quality: carracing-vmc {profile} {' '.join(overrides)} (trained: {trained})")
    print_table(reports, args.thresholds)
    stem = f"time-to-quality{'-' + args.tag if args.tag else ''}"
    picture = plot(reports, args.thresholds, RESULTS / f"{stem}.png")
    result = {"agent": "carracing-vmc", "profile": profile, "overrides": overrides, "trained_at_commit": commit,
              "commit": quality._git("rev-parse", "HEAD"),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(shlex.quote(a) for a in ["python", "bench/time_to_quality.py",
                                                            *(argv if argv is not None else sys.argv[1:])]),
              "thresholds": args.thresholds, "judge": "validation return of each round", "seeds": reports}
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {out.relative_to(ROOT)}, {picture.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

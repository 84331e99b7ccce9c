"""Quality as a distribution: train one version per training seed, evaluate each on the same
evaluation episodes, next to the rule-based and random baselines on those seeds.

    python bench/quality.py --profile quick --train-seeds 0 1 2            # 100 episodes each
    python bench/quality.py --profile quick --train-seeds 0 --episodes 30 --tag rounds3 --set rounds=3
    python bench/quality.py --agent pick-vla --profile quick --train-seeds 0 1      # 100 seen + 100 novel each

Each seed runs the real train flow (collect, gates, V, M, C, register) on its own embedded store
under --home, with `eval.episodes` set to --episodes so the version's own evaluation is the
measurement. Results go to bench/results/quality-<agent>-<profile>[-<tag>].json, rewritten after
every seed, so a long run that stops mid-way keeps what it measured. Baseline returns are cached
by (policy, seeds, simulator code) under --home: they do not change between runs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVAL_SEED = 100_000


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip()


def machine() -> dict:
    """What the figures were measured on: floating-point results (so training draws) differ between
    CPUs with different vector units, so a seed's result is reproducible on like machines only."""
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}


def run_header(script: str, argv: list[str] | None) -> dict:
    """What every bench result file starts with: the code, the date, the command and the machine."""
    return {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(shlex.quote(a) for a in ["python", script, *(argv or sys.argv[1:])]),
            "machine": machine()}


def stats(rewards: list[float]) -> dict:
    r = np.asarray(rewards, dtype=float)
    return {"mean": round(float(r.mean()), 2), "std": round(float(r.std()), 2), "min": round(float(r.min()), 2),
            "max": round(float(r.max()), 2), "episodes": int(r.size)}


def baseline(name: str, seeds: list[int], max_steps: int, home: Path, workers: int) -> dict:
    """A baseline's returns on `seeds`, cached by the simulator and policy code that produced them."""
    from dreamops.tasks.evaluate import evaluate_baseline

    report = evaluate_baseline(name, seeds, max_steps, workers, home / "baselines")
    return {**stats(report.rewards), "rewards": [round(r, 2) for r in report.rewards]}


def pick_baseline(aim: str, seeds: list[int], max_steps: int, workers: int) -> dict:
    """The scripted expert (aim='target') or the no-language baseline (aim='random') on both object
    sets, the same seeds as the versions."""
    from dreamops.tasks.evaluate_pick import ScriptedFactory, evaluate_pick

    out = {}
    for object_set in ("seen", "novel"):
        r = evaluate_pick(ScriptedFactory(aim), aim, seeds, object_set, max_steps, workers, show_progress=False)
        out[object_set] = {"success": r.success_rate, "episodes": len(r.episodes), "collisions": r.collision_rate}
    return out


def pick_row(report: dict) -> dict:
    """pick-vla's per-seed figures from its evaluation report: per object set success, episodes,
    collisions, cycle time and failures; the planner's too when it ran."""
    out = {}
    for row in report["evaluation"]:
        name = "" if row["policy"] == "pick-vla" else f"{row['policy']}/"
        out[f"{name}{row['object_set']}"] = {
            "success": row["success_rate"], "episodes": row["episodes"], "collisions": row["collision_rate"],
            "cycle_time_s": row["cycle_time_s"], "failures": row["failures"],
            "collisions_with": row["collisions_with"]}
    return out


def train_seed(agent: str, profile: str, seed: int, episodes: int, overrides: list[str], home: Path) -> dict:
    """One training seed through the real flow, in a subprocess (its own Prefect temporary server
    and store): -> the flow's result with the version's evaluation."""
    from dreamops.registry import store
    from dreamops.settings import get_settings

    seed_home = home / f"seed-{seed}"
    sets = [f"seed={seed}", f"eval.episodes={episodes}", "eval.compare_baselines=false", *overrides]
    # progress on: in a log (not a terminal) it is a line every 30 s per stage and each finished bar
    cmd = [sys.executable, "-m", "dreamops.flows.cli", "train", "--agent", agent, "--profile", profile,
           *[a for s in sets for a in ("--set", s)]]
    # one dataset store for every seed and ablation: a collection with the same spec is reused
    env = {**os.environ, "DREAMOPS_HOME": str(seed_home), "DREAMOPS_DATASET_DIR": str(home.parent / "datasets")}
    log = home / f"seed-{seed}.log"
    print(f"[seed {seed}] {' '.join(shlex.quote(c) for c in cmd)}  (log: {log})", flush=True)
    start = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"training seed {seed} failed (exit {proc.returncode}); see {log}")
    os.environ["DREAMOPS_HOME"] = str(seed_home)
    get_settings.cache_clear()
    client = store.configure(get_settings())
    mv = store.get_version(agent, "latest")
    report = json.loads(store.read_run_artifact(mv.run_id, "evaluation_report.json"))
    rounds = store.read_run_artifact(mv.run_id, "rounds.json")
    run = client.get_run(mv.run_id)
    if agent == "pick-vla":
        return {"train_seed": seed, **pick_row(report), "wall_s": round(wall, 1), "version": mv.version,
                "data_hash": mv.tags["data_hash"], "validation_status": mv.tags.get("validation_status"),
                "wm_cosine": report["candidate"]["wm_cosine"], "rounds": json.loads(rounds) if rounds else None}
    rewards = report["evaluation"]["vmc"]["rewards"]
    m = run.data.metrics  # real_frames: every real frame the run played (data and validation, counted once)
    return {"train_seed": seed, **stats(rewards), "real_frames": int(m["data/total_frames"]),
            "data_frames": int(m["data/real_frames"]), "validation_frames": int(m.get("data/validation_frames", 0)),
            "wall_s": round(wall, 1), "version": mv.version, "data_hash": mv.tags["data_hash"],
            "validation_status": mv.tags.get("validation_status"),
            "dream_return": round(report["dream"]["final_return"], 2),
            "rounds": json.loads(rounds) if rounds else None, "rewards": rewards}


def profile_config(agent: str, profile: str, overrides: list[str]) -> dict:
    """The resolved config every seed trains with, but for its seed: what the profile meant at this commit."""
    from dreamops.tasks.config import parse_override, resolve_config

    cfg = resolve_config(profile, dict(parse_override(o) for o in overrides), agent=agent).to_dict()
    cfg.pop("seed", None)
    return cfg


def resumed(earlier: dict, now: dict) -> None:
    """--resume continues a measurement, never mixes two: the same agent, profile, overrides,
    resolved config (where the earlier file recorded it) and evaluation seeds, else a ValueError
    naming what differs."""
    for key in ("agent", "profile", "overrides", "config", "eval_seeds"):
        if key == "config" and key not in earlier:
            continue  # written before the config was recorded: its commit is kept in earlier_runs
        if earlier.get(key) != now[key]:
            raise ValueError(f"--resume: the results file has {key}={earlier.get(key)!r}, this run {now[key]!r}; "
                             "use another --tag")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", default="carracing-vmc")
    p.add_argument("--profile", default="quick")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes per version (and baselines)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every seed (an ablation), repeatable")
    p.add_argument("--tag", help="suffix of the results file, for ablations")
    p.add_argument("--home", type=Path, default=ROOT / ".dreamops" / "bench-quality")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--resume", action="store_true",
                   help="keep the seeds already in the results file (same agent, profile, overrides, resolved "
                        "config and evaluation episodes) and train only the missing ones")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading each seed's report
    if args.agent not in ("carracing-vmc", "pick-vla"):
        raise SystemExit(f"bench/quality.py measures carracing-vmc and pick-vla, not {args.agent!r}")
    home = (args.home / f"{args.profile}{'-' + args.tag if args.tag else ''}").resolve()
    home.mkdir(parents=True, exist_ok=True)
    name = f"quality-{args.agent}-{args.profile}{'-' + args.tag if args.tag else ''}.json"
    out_path = RESULTS / name
    seeds = list(range(EVAL_SEED, EVAL_SEED + args.episodes))
    result = {"agent": args.agent, "profile": args.profile, "overrides": args.overrides,
              "config": profile_config(args.agent, args.profile, args.overrides),
              **run_header("bench/quality.py", argv), "eval_seeds": [seeds[0], seeds[-1]], "seeds": [], "baselines": {}}

    if args.resume and out_path.exists():
        earlier = json.loads(out_path.read_text())
        resumed(earlier, result)
        result["seeds"] = [s for s in earlier["seeds"] if s["train_seed"] in args.train_seeds]
        result["earlier_runs"] = [*earlier.get("earlier_runs", []), {k: earlier[k] for k in ("commit", "dirty",
                                                                                              "date", "command")}]
        print(f"resuming {out_path.name}: seeds {[s['train_seed'] for s in result['seeds']]} kept", flush=True)

    def write() -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1) + "\n")

    workers = int(os.environ.get("DREAMOPS_WORKERS", "2"))
    if args.agent == "pick-vla":
        return pick_main(args, result, write, workers, home, out_path)
    done = {s["train_seed"] for s in result["seeds"]}
    for seed in [s for s in args.train_seeds if s not in done]:  # seeds first: a stopped run keeps its figures
        row = train_seed(args.agent, args.profile, seed, args.episodes, args.overrides, home)
        result["seeds"].append(row)
        write()
        print(f"[seed {seed}] mean {row['mean']:.1f} +/- {row['std']:.1f}, min {row['min']:.1f} over "
              f"{row['episodes']} episodes; {row['real_frames']} real frames; {row['wall_s'] / 60:.1f} min", flush=True)
    if not args.no_baselines:
        for b in ("rule_based", "random"):
            result["baselines"][b] = baseline(b, seeds, 1000, args.home, workers)
            print(f"[baseline] {b}: {result['baselines'][b]['mean']:.1f} +/- {result['baselines'][b]['std']:.1f}",
                  flush=True)
        write()
    if result["seeds"]:
        pooled = [r for s in result["seeds"] for r in s["rewards"]]
        result["pooled"] = stats(pooled)
        write()
        print(f"\n{args.agent} {args.profile} {' '.join(args.overrides)}")
        print(f"{'seed':>6}{'mean':>9}{'std':>8}{'min':>9}{'frames':>9}{'wall min':>10}")
        for s in result["seeds"]:
            print(f"{s['train_seed']:>6}{s['mean']:>9.1f}{s['std']:>8.1f}{s['min']:>9.1f}{s['real_frames']:>9}"
                  f"{s['wall_s'] / 60:>10.1f}")
        print(f"pooled {result['pooled']['mean']:.1f} +/- {result['pooled']['std']:.1f} over "
              f"{result['pooled']['episodes']} episodes")
        for b, v in result["baselines"].items():
            print(f"{b}: {v['mean']:.1f} +/- {v['std']:.1f} (same {v['episodes']} seeds)")
    print(f"-> {out_path.relative_to(ROOT)}")
    return 0


def pick_main(args, result: dict, write, workers: int, home: Path, out_path: Path) -> int:
    """pick-vla: per seed success on --episodes seen and --episodes novel evaluation episodes, next
    to the expert and the no-language baseline on the same seeds."""
    seeds = list(range(EVAL_SEED, EVAL_SEED + args.episodes))
    done = {s["train_seed"] for s in result["seeds"]}
    for seed in [s for s in args.train_seeds if s not in done]:
        row = train_seed(args.agent, args.profile, seed, args.episodes, args.overrides, home)
        result["seeds"].append(row)
        write()
        print(f"[seed {seed}] seen {row['seen']['success']:.0%}, novel {row['novel']['success']:.0%}, "
              f"collisions {row['seen']['collisions']:.0%} / {row['novel']['collisions']:.0%} over "
              f"{args.episodes} + {args.episodes} episodes; {row['wall_s'] / 60:.1f} min", flush=True)
    if not args.no_baselines:
        for name, aim in (("expert", "target"), ("no_language", "random")):
            result["baselines"][name] = pick_baseline(aim, seeds, 80, workers)
            write()
    print(f"\n{args.agent} {args.profile} {' '.join(args.overrides)}")
    print(f"{'seed':>6}{'seen':>7}{'novel':>7}{'coll. seen':>12}{'coll. novel':>13}{'wall min':>10}")
    for s in result["seeds"]:
        print(f"{s['train_seed']:>6}{s['seen']['success']:>7.0%}{s['novel']['success']:>7.0%}"
              f"{s['seen']['collisions']:>12.0%}{s['novel']['collisions']:>13.0%}{s['wall_s'] / 60:>10.1f}")
    for b, v in result["baselines"].items():
        print(f"{b}: seen {v['seen']['success']:.0%}, novel {v['novel']['success']:.0%} (same seeds)")
    print(f"-> {out_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

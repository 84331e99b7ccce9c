"""carracing-vmc's controller trainers side by side on ONE world model: CMA-ES and actor-critic in
imagination, each from the zero controller, on the same M, start states and dream settings; the
registered version's own controller as a reference row. Every controller drives the same real
CarRacing-v3 seeds (100000+).

    python bench/planners_carracing.py --home .dreamops --model latest --seeds 0 1 --episodes 100
    python bench/planners_carracing.py --home .dreamops --bundle round_0/vmc_bundle.pt --dataset 4552b5f0 \
        --methods registered actor_critic mpc_cem --seeds 0 1

`mpc_*`: the registered version's controller with each decision planned in M's latent space
(models.latent_mpc: CEM or MPPI from the controller's own plan, over 2 sampled futures, their mean or
their CVaR at 0.5), on the version's M; these rows have no training and no dream return of their own.
`cma_ensemble`: CMA-ES whose dreams are spread over 3 Ms (the version's and two trained on
bootstrap resamples of its training episodes, tasks.ensemble), scored in the version's M.

Rows (one per method and training seed): real return (mean, std), dream return (the same final
dream draw for every method), the gap dream - real (model exploitation), V-M-C decision latency
p50/p99 on one thread (every method ships the same 867-parameter linear controller, so this is the
same network), training wall time. Written to bench/results/planners-carracing-vmc.json (commit,
date, command) after every row, so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import add_source_arguments, load_source  # noqa: E402
from quality import EVAL_SEED, RESULTS, run_header  # noqa: E402

METHODS = ("registered", "cma", "actor_critic", "cma_ensemble", "mpc_cem", "mpc_mppi", "mpc_cem_cvar")
MPC_HORIZON, MPC_FUTURES = 10, 2   # 32 candidates x 2 futures x 10 steps, 3 iterations: ~20 ms a decision
ENSEMBLE_SIZE = 3   # the version's M and two Ms trained on bootstrap resamples (tasks.ensemble)


def actor_critic_config(items: list[str]):
    """['updates=1000', 'actor_lr=3e-4'] -> a validated ActorCriticConfig; a key it does not have, or a
    value of the wrong type, stops the bench before any training."""
    from dreamops.tasks.config import ActorCriticConfig

    defaults, values = ActorCriticConfig(), {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ActorCriticConfig.__dataclass_fields__:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(ActorCriticConfig.__dataclass_fields__)}")
        try:
            default = getattr(defaults, key)
            values[key] = (float if default is None else type(default))(value)   # None: an optional number
        except ValueError:
            raise SystemExit(f"--set {item!r}: {value!r} is not a {type(getattr(defaults, key)).__name__}") from None
    cfg = ActorCriticConfig(**values)
    try:
        cfg.validate()
    except ValueError as exc:
        raise SystemExit(f"--set: {exc}") from None
    return cfg


def decision_latency(factory, action_repeat: int, decisions: int = 100) -> dict[str, float]:
    """A planned policy's decision time on one thread (frames of noise; the search does the same
    work whatever the frame shows) -> p50_ms, p99_ms."""
    import numpy as np

    policy = factory()   # sets one thread, as a worker does
    policy.reset(0)
    rng = np.random.default_rng(0)
    times = []
    for i in range(decisions * action_repeat):
        frame = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        t = time.perf_counter()
        policy.act(frame)
        if i % action_repeat == 0:
            times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds of each trainer")
    p.add_argument("--episodes", type=int, default=100, help="real evaluation episodes per row")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="actor-critic settings (tasks.config.ActorCriticConfig), e.g. --set updates=1000")
    p.add_argument("--json", type=Path, default=RESULTS / "planners-carracing-vmc.json")
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in --json (the same model and data), each with its own command")
    args = p.parse_args(argv)

    import torch

    from dreamops.models.bundle import BundlePolicyFactory, VMCBundle
    from dreamops.models.latent_mpc import LatentMPC
    from dreamops.models.trajectory_opt import CEM, MPPI
    from dreamops.tasks.actor_critic import train_actor_critic
    from dreamops.tasks.encode import encode
    from dreamops.tasks.ensemble import train_members
    from dreamops.tasks.evaluate import evaluate
    from dreamops.tasks.evolve import dream_fitness, evolve_controller
    from dreamops.tasks.profile import profile_latency
    from dreamops.tasks.train_mdnrnn import dream_start_states

    ac_cfg = actor_critic_config(args.set)
    base, data, cfg, model = load_source(args)
    data_hash = data.hash
    train_ids, _ = data.split(cfg.vae.holdout_fraction, cfg.seed)
    latents = encode(base.vae, data)
    starts = dream_start_states(base.mdnrnn, latents, train_ids, seed=cfg.seed, skip_steps=cfg.cma.start_after_steps)
    seeds = list(range(EVAL_SEED, EVAL_SEED + args.episodes))
    latency = profile_latency(base, iterations=300)["full_step"]
    out = {**run_header("bench/planners_carracing.py", argv), "model": model, "data_hash": data_hash, "eval_seeds": [seeds[0], seeds[-1]], "cma": asdict(cfg.cma),
           "actor_critic": asdict(ac_cfg), "rows": []}
    if args.append and args.json.exists():
        before = json.loads(args.json.read_text())
        if (before.get("model"), before.get("data_hash")) != (model, data_hash):
            raise SystemExit(f"--append: {args.json} holds rows of {before.get('model')} on {before.get('data_hash')}, "
                             f"not of {model} on {data_hash}")
        out["rows"] = [{"command": before["command"], "commit": before["commit"], **r} if "command" not in r else r
                       for r in before["rows"]]

    def final_dream(controller) -> float:   # the draw evolve_checkpoints scores its final mean with
        c = cfg.cma
        return dream_fitness(base.mdnrnn, controller.get_flat().unsqueeze(0), starts, max(c.rollouts, 16), c.dream_steps,
                             c.temperature, c.seed + 7, c.dream_dropout, c.done_mode).item()

    def row(method: str, seed: int | None, controller, train_s: float, planner=None) -> None:
        bundle = VMCBundle(base.arch, base.vae, base.mdnrnn, controller)
        with tempfile.TemporaryDirectory() as tmp:
            path = bundle.save(Path(tmp) / "vmc_bundle.pt")
            factory = BundlePolicyFactory(str(path), planner=planner)
            report = evaluate(factory, f"{method} seed {seed}", seeds, cfg.eval.max_steps, args.workers)
            timing = latency if planner is None else decision_latency(factory, base.arch.action_repeat)
        dream = final_dream(controller) if planner is None else float("nan")
        out["rows"].append({"command": out["command"], "commit": out["commit"], "method": method, "seed": seed, "real_mean": report.mean, "real_std": report.std,
                            "dream_return": dream, "gap": dream - report.mean, "episodes": len(seeds),
                            "latency_p50_ms": timing["p50_ms"], "latency_p99_ms": timing["p99_ms"],
                            "train_s": round(train_s, 1), "rewards": [round(r, 1) for r in report.rewards]})
        print(f"{method:>13} seed {seed}: real {report.mean:7.1f} +- {report.std:5.1f}  dream {dream:7.1f}  "
              f"train {train_s:6.1f} s", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")

    ensemble = []
    if "cma_ensemble" in args.methods:
        t = time.perf_counter()
        members = train_members(latents, train_ids, data.split(cfg.vae.holdout_fraction, cfg.seed)[1], cfg.mdn,
                                ENSEMBLE_SIZE - 1, cfg.collect.action_repeat, seed=1_000, show_progress=False)
        ensemble = [(m, dream_start_states(m, latents, train_ids, seed=cfg.seed, skip_steps=cfg.cma.start_after_steps))
                    for m in members]
        members_s = time.perf_counter() - t
        out["ensemble"] = {"size": ENSEMBLE_SIZE, "members_train_s": round(members_s, 1)}
    if "registered" in args.methods:
        row("registered", None, base.controller, 0.0)
    planners = {"mpc_cem": (CEM(samples=32, elites=4, iterations=3), 1.0),
                "mpc_mppi": (MPPI(samples=32, iterations=3, temperature=1.0), 1.0),
                "mpc_cem_cvar": (CEM(samples=32, elites=4, iterations=3), 0.5)}
    for method, (optimiser, alpha) in planners.items():
        if method in args.methods:
            row(method, None, base.controller, 0.0,
                LatentMPC(optimiser, MPC_HORIZON, MPC_FUTURES, temperature=cfg.cma.temperature, alpha=alpha))
    for seed in args.seeds:
        torch.manual_seed(seed)
        if "cma" in args.methods:
            t = time.perf_counter()
            controller, _ = evolve_controller(base.mdnrnn, starts, replace(cfg.cma, seed=seed), show_progress=False)
            row("cma", seed, controller, time.perf_counter() - t)
        if "cma_ensemble" in args.methods:   # the members' training time is counted in every row
            t = time.perf_counter()
            controller, _ = evolve_controller(base.mdnrnn, starts, replace(cfg.cma, seed=seed), show_progress=False,
                                              ensemble=ensemble)
            row("cma_ensemble", seed, controller, time.perf_counter() - t + members_s)
        if "actor_critic" in args.methods:
            t = time.perf_counter()
            controller, _ = train_actor_critic(base.mdnrnn, starts, ac_cfg, cfg.cma, seed=seed, show_progress=False)
            row("actor_critic", seed, controller, time.perf_counter() - t)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

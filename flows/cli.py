"""The `dreamops` command line. Bad input -> one line on stderr and exit code 2, not a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys

AGENTS = ("carracing-vmc",)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamops", description="Train robot policies in learned world models.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run the train flow: collect, V, M, C in the dream, evaluate, register")
    t.add_argument("--agent", default="carracing-vmc", help=f"agent family ({', '.join(AGENTS)})")
    t.add_argument("--profile", default="quick", help="smoke | quick | full")
    t.add_argument("--warehouse", default="default", help="warehouse id tagged on the version")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set cma.generations=10 (repeatable)")
    t.add_argument("--dataset", help="train on this dataset (hash, prefix or path) instead of collecting")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")

    v = sub.add_parser("validate", help="run the data gate alone on a dataset; exit 0 if it passes, 1 if not")
    v.add_argument("--dataset", required=True, help="dataset content hash, unique prefix or folder")
    v.add_argument("--profile", default="quick", help="profile whose thresholds apply")

    e = sub.add_parser("evaluate", help="evaluate a registered version (or a baseline) in the real simulator")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="version number, alias (production, staging, ...) or 'latest'")
    src.add_argument("--baseline", choices=("random", "rule_based"), help="evaluate a baseline policy instead")
    e.add_argument("--agent", default="carracing-vmc")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=100_000, help="first episode seed (default: the eval seeds)")
    e.add_argument("--max-steps", type=int, default=1000)
    e.add_argument("--json", action="store_true", help="print the full report as JSON")

    pr = sub.add_parser("profile", help="latency p50/p95/p99 of V, M, C and the full step on one CPU thread")
    pr.add_argument("--model", required=True, help="version number, alias or 'latest'")
    pr.add_argument("--agent", default="carracing-vmc")
    pr.add_argument("--iterations", type=int, default=1000)

    u = sub.add_parser("ui", help="start the MLflow UI on the configured (default: embedded) store")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--host", default="127.0.0.1")
    return p


def _fail(message: str) -> int:
    print(f"dreamops: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dreamops.settings import get_settings

    settings = get_settings()
    # Prefect's temporary server keeps its database with the other embedded stores.
    prefect_home = settings.resolved_home / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home))
    # its first start migrates a fresh database, slower than the 20 s default on 2 cores
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
    try:
        commands = {"train": _train, "validate": _validate, "evaluate": _evaluate, "profile": _profile, "ui": _ui}
        return commands[args.command](args, settings)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except (ValueError, LookupError) as exc:
        return _fail(str(exc))
    except RuntimeError as exc:
        from dreamops.validation.data_gate import DataGateError

        if isinstance(exc, DataGateError):  # the run stopped before training; say why, fully
            print(exc.report.summary(), file=sys.stderr)
            return 1
        raise


def _check_agent(agent: str) -> None:
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; choose one of {', '.join(AGENTS)}")


def _train(args, settings) -> int:
    from dreamops.tasks.config import parse_override, resolve_config

    _check_agent(args.agent)
    overrides = dict(parse_override(o) for o in args.overrides)
    resolve_config(args.profile, overrides)  # fail fast, before any server starts
    from dreamops.flows.train import train

    result = train(agent=args.agent, profile=args.profile, overrides=overrides, warehouse_id=args.warehouse,
                   dataset=args.dataset, show_progress=not args.no_progress)
    baselines = ", ".join(f"{k} {v:.1f}" for k, v in result["baselines"].items())
    print(f"\nRegistered {result['model_uri']} (run {result['run_id']})")
    print(f"  real-env mean return {result['mean_reward']:.1f}" + (f" (baselines: {baselines})" if baselines else ""))
    print(f"  dream return {result['dream_return']:.1f}; full-step p99 {result['latency_p99_ms']:.2f} ms")
    if result["validation_status"] == "passed":
        print("  every gate passed: alias 'staging' now points at this version")
    else:
        print(f"  validation_status=failed ({', '.join(result['failed_gates'])}): not deployable")
    print(f"  data {result['data_hash'][:16]} in {settings.datasets}")
    print(f"  tracking store: {settings.mlflow_tracking_uri}")
    exe = sys.argv[0] if sys.argv[0].endswith("dreamops") else "dreamops"  # e.g. .venv/bin/dreamops under make
    print(f"  open the MLflow UI with: {exe} ui   (then http://127.0.0.1:5000)")
    return 0


def _validate(args, settings) -> int:
    from dreamops.tasks.config import resolve_config
    from dreamops.tasks.dataset import find_path
    from dreamops.tasks.gate import validate_data

    cfg = resolve_config(args.profile)
    path = find_path(settings.datasets, args.dataset)
    docs = settings.resolved_home / "data_docs" / path.name
    report = validate_data(path, cfg.gate, cfg.collect.action_repeat, docs)
    print(report.summary())
    if report.data_docs:
        print(f"  Data Docs: {report.data_docs}")
    return 0 if report.passed else 1


def _load_bundle_path(agent: str, ref: str, settings):
    from dreamops.registry import store

    _check_agent(agent)
    store.configure(settings)
    mv = store.get_version(agent, ref)
    return mv, store.download_version_artifact(agent, mv.version, "vmc_bundle.pt")


def _evaluate(args, settings) -> int:
    from dreamops.models.bundle import BundlePolicyFactory
    from dreamops.tasks.evaluate import baseline_factory, evaluate
    from dreamops.tasks.failures import analyze_failures

    if args.episodes < 1 or args.max_steps < 1:
        raise ValueError("--episodes and --max-steps must be positive")
    seeds = list(range(args.seed, args.seed + args.episodes))
    if args.baseline:
        name, factory = args.baseline, baseline_factory(args.baseline)
    else:
        mv, path = _load_bundle_path(args.agent, args.model, settings)
        name, factory = f"{args.agent} v{mv.version}", BundlePolicyFactory(str(path))
    report = evaluate(factory, name, seeds, args.max_steps, settings.n_workers)
    summary = report.summary()
    if not args.baseline:
        summary["failures"] = analyze_failures(report.episodes)["counts"]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{name}: mean return {report.mean:.1f} +/- {report.std:.1f} over {len(seeds)} episodes "
              f"(seeds {seeds[0]}..{seeds[-1]}), mean length {summary['mean_length']:.0f}, "
              f"off-track events {summary['off_track_events']}")
        if "failures" in summary:
            print(f"  failures: {summary['failures']}")
    return 0


def _profile(args, settings) -> int:
    from dreamops.models.bundle import VMCBundle
    from dreamops.tasks.profile import profile_latency

    if args.iterations < 10:
        raise ValueError("--iterations must be >= 10")
    mv, path = _load_bundle_path(args.agent, args.model, settings)
    report = profile_latency(VMCBundle.load(path), args.iterations)
    print(f"{args.agent} v{mv.version}, one CPU thread, {args.iterations} iterations")
    for part, stats in report.items():
        if part != "threads":
            print(f"  {part:<14} p50 {stats['p50_ms']:7.3f} ms   p95 {stats['p95_ms']:7.3f} ms   p99 {stats['p99_ms']:7.3f} ms")
    return 0


def _ui(args, settings) -> int:
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", settings.mlflow_tracking_uri,
           "--host", args.host, "--port", str(args.port)]
    if settings.tracking_uri is None:
        cmd += ["--default-artifact-root", settings.artifact_root.as_uri()]
    print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    os.execv(sys.executable, cmd)  # become the server: signals reach it directly


if __name__ == "__main__":
    sys.exit(main())

"""The `dreamops` command line. Bad input -> one line on stderr and exit code 2, not a traceback."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback

from dreamops.families import DEFAULT_FAMILY, FAMILIES, family
from dreamops.registry.errors import PromotionRefusedError, VersionIntegrityError

AGENTS = tuple(FAMILIES)  # dreamops.families imports no torch: --help stays fast


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamops", description="Train robot policies in learned world models.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run the train flow: collect, V, M, C in the dream, evaluate, register")
    t.add_argument("--agent", default=DEFAULT_FAMILY,
                   help="agent family: " + "; ".join(f"{f.name} ({f.summary})" for f in FAMILIES.values()))
    t.add_argument("--profile", default="quick",
                   help="; ".join(f"{f.name}: {' | '.join(f.profiles)}" for f in FAMILIES.values()))
    t.add_argument("--warehouse", default="default", help="warehouse id tagged on the version")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set cma.generations=10 (repeatable)")
    t.add_argument("--dataset", help="train on this dataset (hash, prefix or path) instead of collecting")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    t.add_argument("--parent", help="warm-start from this version's weights (number, semver or alias); "
                                    "recorded as the new version's parent")
    t.add_argument("--verbose", action="store_true",
                   help="show the libraries' logs and warnings (Prefect, MLflow, Great Expectations) and, "
                        "on a refused run, Prefect's traceback")

    v = sub.add_parser("validate", help="run the data gate alone on a dataset; exit 0 if it passes, 1 if not")
    v.add_argument("--dataset", required=True, help="dataset content hash, unique prefix or folder")
    v.add_argument("--profile", default="quick", help="profile whose thresholds apply")
    v.add_argument("--agent", default=DEFAULT_FAMILY, help=f"agent family whose data schema applies ({', '.join(AGENTS)})")

    e = sub.add_parser("evaluate", help="evaluate a registered version (or a baseline) in the real simulator")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="version number, alias (production, staging, ...) or 'latest'")
    src.add_argument("--baseline", choices=sorted({b for f in FAMILIES.values() for b in f.baselines}),
                     help="evaluate a baseline policy instead (" + "; ".join(
                         f"{f.name}: {', '.join(f.baselines)}" for f in FAMILIES.values()) + ")")
    e.add_argument("--agent", default=DEFAULT_FAMILY, help=f"agent family ({', '.join(AGENTS)})")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=100_000, help="first episode seed (default: the eval seeds)")
    e.add_argument("--max-steps", type=int, default=None, help="per episode (default: the family's episode length)")
    e.add_argument("--json", action="store_true", help="print the full report as JSON")

    de = sub.add_parser("drift-eval", help="false-alarm and detection rates of the drift decision: held-out "
                                           "normal windows vs windows of a shifted scenario, played for real")
    de.add_argument("--model", default="staging", help="version number, semver, alias or 'latest' (default staging)")
    de.add_argument("--agent", default=DEFAULT_FAMILY, help=f"agent family ({', '.join(AGENTS)})")
    de.add_argument("--baseline-episodes", type=int, default=200)
    de.add_argument("--window", type=int, default=20, help="episodes per drift-check window")
    de.add_argument("--holdout-windows", type=int, default=10)
    de.add_argument("--shifted-windows", type=int, default=5)
    de.add_argument("--scenario", default=None, help="the shifted scenario, one of the family robot's SCENARIOS "
                                                      "(default: the robot's, e.g. night or novel objects)")
    de.add_argument("--max-steps", type=int, default=None,
                    help="simulator frames or control steps per episode (default: the family robot's)")
    de.add_argument("--min-reward", type=float, default=0.0, help="the performance signal's rolling-mean floor")
    de.add_argument("--required", type=int, default=2, help="signals that must fire (the seed's rule: 2 of 3)")
    de.add_argument("--workers", type=int, default=2)
    de.add_argument("--json", metavar="PATH", help="also write the full result (every window) as JSON")
    de.add_argument("--no-cache", action="store_true",
                    help="replay every episode (default: reuse episodes played before, kept in $DREAMOPS_HOME/drift-eval)")

    pr = sub.add_parser("profile", help="latency p50/p95/p99 of a version's inference on one CPU thread, per part "
                                       "(the family's: V, M, C and the full step; one action chunk)")
    pr.add_argument("--model", required=True, help="version number, alias or 'latest'")
    pr.add_argument("--agent", default=DEFAULT_FAMILY, help=f"agent family ({', '.join(AGENTS)})")
    pr.add_argument("--iterations", type=int, default=1000)

    for name, text in (("server", "run the MLflow server (UI, registry, artifact proxy) on the configured stores"),
                       ("ui", "same as `server`")):
        u = sub.add_parser(name, help=text)
        u.add_argument("--port", type=int, default=5000)
        u.add_argument("--host", default="127.0.0.1")
        u.add_argument("--workers", type=int, default=1)

    ap = sub.add_parser("api", help="serve the dreamops REST API (uvicorn)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--workers", type=int, default=None, help="uvicorn worker processes (default: "
                    "DREAMOPS_API_WORKERS; 0 there: one per CPU core on PostgreSQL, 1 on SQLite)")

    sv = sub.add_parser("serve", help="run the Prefect deployments (the API's training trigger starts them)")
    sv.add_argument("--limit", type=int, default=1, help="flow runs at a time")

    up = sub.add_parser("up", help="the local stack on loopback: Prefect server, MLflow server, serve, API")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--prefect-port", type=int, default=4200)
    up.add_argument("--mlflow-port", type=int, default=5000)
    up.add_argument("--api-port", type=int, default=8000)

    fl = sub.add_parser("fleet", help="a simulated fleet: robots run their assigned versions in their family's real "
                                      "simulator (--model) and report telemetry to the API")
    from dreamops.fleet.simulator import add_fleet_arguments

    add_fleet_arguments(fl)

    tk = sub.add_parser("token", help="create an API token (printed once; only its hash is stored)")
    tk.add_argument("action", choices=("create",))
    tk.add_argument("--name", required=True)
    tk.add_argument("--role", required=True, choices=("engineer", "robot", "viewer"))

    ls = sub.add_parser("versions", help="list a model's versions with semver, aliases and gate status")
    ls.add_argument("model", nargs="?", default=DEFAULT_FAMILY)

    li = sub.add_parser("lineage", help="data, weights, config, code, gates and parent of one version")
    li.add_argument("version", help="version number, semver (1.2.0) or alias")
    li.add_argument("--model", default=DEFAULT_FAMILY)
    li.add_argument("--json", action="store_true")

    pm = sub.add_parser("promote", help="point staging, canary or production at a version (rules enforced)")
    pm.add_argument("version", help="version number, semver or alias")
    pm.add_argument("--to", required=True, choices=("staging", "canary", "production"))
    pm.add_argument("--model", default=DEFAULT_FAMILY)
    pm.add_argument("--reason", default="", help="why; goes into the audit log")

    rb = sub.add_parser("rollback", help="put last-known-good (or --to VERSION) back in production")
    rb.add_argument("model", nargs="?", default=DEFAULT_FAMILY)
    rb.add_argument("--to", help="version to restore (default: last-known-good)")
    rb.add_argument("--reason", default="")

    hi = sub.add_parser("history", help="the audit log of a model's alias moves, newest first")
    hi.add_argument("model", nargs="?", default=DEFAULT_FAMILY)
    hi.add_argument("--limit", type=int, default=50)

    rc = sub.add_parser("reconcile", help="apply the promotion rules to alias moves made in the MLflow UI")
    rc.add_argument("--model", help="one model (default: every registered model)")
    rc.add_argument("--watch", action="store_true", help="keep polling (the fallback when webhooks cannot reach the API)")
    rc.add_argument("--interval", type=float, default=30.0, help="seconds between polls with --watch")

    wh = sub.add_parser("webhook", help="register the MLflow webhook that reports versions and alias moves")
    wh.add_argument("--url", required=True, help="the dreamops API's receiver, e.g. https://dreamops/api/v1/webhooks/mlflow")
    return p


def _fail(message: str) -> int:
    print(f"dreamops: error: {message}", file=sys.stderr)
    return 2


# Commands whose output is their own progress and summary; servers (ui, api, up, ...) keep their logs.
QUIET_COMMANDS = ("train", "validate", "evaluate", "profile", "drift-eval", "fleet")


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
    if args.command in QUIET_COMMANDS:
        from dreamops.quiet import quiet_libraries

        quiet_libraries(verbose=getattr(args, "verbose", False))
    try:
        commands = {"train": _train, "validate": _validate, "evaluate": _evaluate, "profile": _profile,
                    "ui": _server, "server": _server, "versions": _versions, "lineage": _lineage, "promote": _promote,
                    "rollback": _rollback, "history": _history, "reconcile": _reconcile, "webhook": _webhook, "api": _api, "serve": _serve,
                    "token": _token, "up": _up, "drift-eval": _drift_eval,
                    "fleet": _fleet}
        return commands[args.command](args, settings)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except PromotionRefusedError as exc:  # the rules said no: not bad input, a verdict
        print(f"dreamops: refused: {exc}", file=sys.stderr)
        return 1
    except (ValueError, LookupError) as exc:
        return _fail(str(exc))
    except RuntimeError as exc:
        from dreamops.validation.data_gate import DataGateError

        if isinstance(exc, DataGateError):  # the run stopped before training; say why, fully
            if getattr(args, "verbose", False):  # printed here: Prefect's log handlers may write elsewhere
                traceback.print_exception(exc, file=sys.stderr)
            print(exc.report.summary(), file=sys.stderr)
            return 1
        if isinstance(exc, VersionIntegrityError):
            print(f"dreamops: error: {exc}", file=sys.stderr)
            return 1
        raise


def _train(args, settings) -> int:
    from dreamops.tasks.config import parse_override, resolve_config

    fam = family(args.agent)
    if args.parent:
        fam.require("warm_start")
    overrides = dict(parse_override(o) for o in args.overrides)
    cfg = resolve_config(args.profile, overrides, agent=args.agent)  # fail fast, before any server starts
    from dreamops.tasks.device import resolve_device

    resolve_device(cfg.device)  # device=cuda on a machine without CUDA: one line, before any server starts
    from dreamops.flows.train import train

    _quiet_refusals(not args.verbose)
    result = train(agent=args.agent, profile=args.profile, overrides=overrides, warehouse_id=args.warehouse,
                   dataset=args.dataset, show_progress=not args.no_progress, parent=args.parent)
    print(f"\nRegistered {result.model_uri} as semver {result.semver} (run {result.run_id})")
    for line in fam.load("summary_lines")(result):
        print(f"  {line}")
    if result.flow_s is not None:
        print(f"  {_time_line(result.stage_s, result.flow_s)}")
    if result.validation_status == "passed":
        print("  every gate passed: alias 'staging' now points at this version")
    else:
        print(f"  validation_status=failed ({', '.join(result.failed_gates)}): not deployable")
    print(f"  data {result.data_hash[:16]} at {result.data_uri}")
    print(f"  tracking store: {settings.mlflow_tracking_uri}")
    exe = sys.argv[0] if sys.argv[0].endswith("dreamops") else "dreamops"  # e.g. .venv/bin/dreamops under make
    print(f"  open the MLflow UI with: {exe} ui   (then http://127.0.0.1:5000)")
    return 0


def _is_refusal(exc: BaseException) -> bool:
    """What main() reports in one line itself: bad input, a failed gate, a refused promotion."""
    from dreamops.validation.data_gate import DataGateError

    return isinstance(exc, (ValueError, LookupError, DataGateError, PromotionRefusedError, VersionIntegrityError))


class _NoRefusalTracebacks(logging.Filter):
    """Drops Prefect's 'Encountered exception' record (and its traceback) for a refusal."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and _is_refusal(exc))


def _quiet_refusals(quiet: bool) -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _NoRefusalTracebacks)]:
            logger.removeFilter(f)
        if quiet:
            logger.addFilter(_NoRefusalTracebacks())


def _time_line(stage_s: dict[str, float], flow_s: float) -> str:
    """Where the flow's wall time went, the largest stage first (other: MLflow logging, the gates)."""
    rest = max(0.0, flow_s - sum(stage_s.values()))
    parts = sorted({**stage_s, "other": rest}.items(), key=lambda kv: -kv[1])
    return f"time in the flow {flow_s / 60:.1f} min: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in parts)


def _validate(args, settings) -> int:
    from dreamops.tasks.config import resolve_config
    from dreamops.tasks.dataset import find_path

    fam = family(args.agent)
    cfg = resolve_config(args.profile, agent=args.agent)
    path = find_path(settings.datasets, args.dataset)
    docs = settings.resolved_home / "data_docs" / path.name
    # the gate the family's train flow runs, so exit 0 means its training can read the data
    report = fam.load("data_gate")(path, cfg, docs)
    print(report.summary())
    if report.data_docs:
        print(f"  Data Docs: {report.data_docs}")
    return 0 if report.passed else 1


def _load_version(agent: str, ref: str, settings, command: str):
    from dreamops.registry import store

    family(agent).require(command)
    store.configure(settings)
    return store.load_bundle(agent, ref)  # checks the weights against their registered hashes


def _evaluate(args, settings) -> int:
    fam = family(args.agent)
    fam.require("evaluate")
    if args.episodes < 1 or (args.max_steps is not None and args.max_steps < 1):
        raise ValueError("--episodes and --max-steps must be positive")
    seeds = list(range(args.seed, args.seed + args.episodes))
    if args.baseline:
        if args.baseline not in fam.baselines:
            raise ValueError(f"{fam.name} has the baselines {', '.join(fam.baselines)}, not {args.baseline!r}")
        name, source = args.baseline, args.baseline
    else:
        mv, _, source = _load_version(args.agent, args.model, settings, "evaluate")
        name = f"{args.agent} v{mv.version}"
    report = fam.load("evaluator")(source, name, seeds, args.max_steps, settings.n_workers, settings.ray_address,
                                   show_progress=not args.json)   # --json: stdout is the JSON alone
    print(json.dumps(report.detail, indent=2) if args.json else "\n".join(report.lines))
    return 0


def _drift_eval(args, settings) -> int:
    import numpy as np

    from dreamops.registry import store
    from dreamops.tasks.drift_eval import DriftEvalConfig, RobotFactory, TelemetryCache, evaluate, format_summary

    fam = family(args.agent)
    fam.require("drift_eval")
    robot = fam.load("robot")
    scenario = args.scenario or robot.SHIFTED_SCENARIO
    shifted = [s for s in robot.SCENARIOS if s != "day"]
    if scenario not in shifted:
        raise ValueError(f"--scenario must be a shifted scenario of {fam.name}: {', '.join(shifted)}")
    max_steps = args.max_steps or robot.EPISODE_STEPS
    config = DriftEvalConfig(args.baseline_episodes, args.window, args.holdout_windows, args.shifted_windows,
                             scenario, max_steps, min_reward=args.min_reward,
                             required_signals=args.required, workers=args.workers)
    mv, _, path = _load_version(args.agent, args.model, settings, "drift_eval")
    reference = np.load(store.download_version_artifact(args.agent, str(mv.version), "reference_latents.npy"))
    # keyed by the weights' hash: a version number alone names different models in different stores
    weights = "".join(v[:6] for k, v in sorted(mv.tags.items()) if k.startswith("weights.")) or str(mv.version)
    key = f"{args.agent}-{weights}-{max_steps}f-{config.latent_sample}z-{robot.LATENTS}"
    cache = TelemetryCache(None if args.no_cache else settings.resolved_home / "drift-eval", key)
    summary = evaluate(RobotFactory(args.agent, path), reference, config, cache)
    summary["version"] = str(mv.version)
    print(f"{args.agent} v{mv.version}\n{format_summary(summary)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


def _profile(args, settings) -> int:
    if args.iterations < 10:
        raise ValueError("--iterations must be >= 10")
    mv, bundle, _ = _load_version(args.agent, args.model, settings, "profile")
    report = family(args.agent).load("profiler")(bundle, args.iterations)
    print(f"{args.agent} v{mv.version}, one CPU thread, {args.iterations} iterations")
    for part, stats in report.items():
        if part != "threads":
            print(f"  {part:<14} p50 {stats['p50_ms']:7.3f} ms   p95 {stats['p95_ms']:7.3f} ms   p99 {stats['p99_ms']:7.3f} ms")
    return 0


def _server(args, settings) -> int:
    from dreamops.registry.server import mlflow_server_command

    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    cmd, env = mlflow_server_command(settings, args.host, args.port, args.workers)
    print(f"MLflow server and UI on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    os.execve(sys.executable, cmd, env)  # become the server: signals reach it directly


def _api(args, settings) -> int:
    import signal

    import uvicorn

    def stop(signum, frame):
        raise SystemExit(0)

    # uvicorn shuts down on SIGTERM, then raises it again with the handler found before it: with the
    # default one the process died at once, and what it started (Prefect's temporary server, stopped
    # at exit) lived on. Exiting normally runs those exit hooks.
    signal.signal(signal.SIGTERM, stop)
    workers = args.workers or settings.api_worker_count
    if workers > 1:
        from dreamops.db import session_factory
        from dreamops.sql import is_sqlite

        # migrate once, here: workers starting together on a fresh database would race on it
        settings.resolved_home.mkdir(parents=True, exist_ok=True)
        session_factory(settings.sql_url)
        if is_sqlite(settings.sql_url):
            print(f"dreamops api: {workers} workers on SQLite: lookups scale, every write waits for the "
                  f"database's one write lock", flush=True)
    # with several workers uvicorn's supervisor handles SIGTERM itself (it stops the workers, then exits)
    uvicorn.run("dreamops.api.main:app", host=args.host, port=args.port, log_level="info", workers=workers,
                access_log=settings.api_access_log)
    return 0


def _serve(args, settings) -> int:
    from dreamops.flows.serve import serve_forever

    if args.limit < 1:
        raise ValueError("--limit must be >= 1")
    serve_forever(args.limit)
    return 0


def _fleet(args, settings) -> int:
    import logging

    from dreamops.fleet.simulator import config_from_args, run_fleet

    config = config_from_args(args, settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    summary = run_fleet(config)
    for version, stats in sorted(summary.versions.items()):
        print(f"version {version}: {stats.episodes} episodes, mean reward {stats.mean_reward:.1f}, "
              f"{stats.collisions} collisions")
    print(f"failed episodes: {summary.failed_episodes}")
    return 0


def _up(args, settings) -> int:
    from dreamops.flows.up import Ports, up

    return up(settings, args.host, Ports(args.prefect_port, args.mlflow_port, args.api_port))


def _token(args, settings) -> int:
    from dreamops.api.auth import create_token
    from dreamops.db import session_factory

    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    with session_factory(settings.sql_url)() as session:
        print(create_token(session, args.name, args.role))
    return 0


def _registry(settings):
    from dreamops.registry import store
    from dreamops.registry.promotion import Promotions

    store.configure(settings)
    return store, Promotions.from_settings(settings)


def _print_moves(moves) -> None:
    for m in moves:
        print(f"  {m.alias}: {m.from_version or '-'} -> {m.to_version or '-'} [{m.outcome}] {m.reason}")


def _versions(args, settings) -> int:
    store, _ = _registry(settings)
    rows = store.list_versions(args.model)
    if not rows:
        raise LookupError(f"model {args.model!r} has no versions")
    print(f"{'version':>7}  {'semver':<8} {'aliases':<28} {'status':<8} {'return':>7}  {'data':<12}  created")
    for r in rows:
        print(f"{r.version:>7}  {r.semver:<8} {','.join(r.aliases) or '-':<28} {r.validation_status:<8} "
              f"{r.mean_reward:>7}  {r.data_hash:<12}  {r.created:%Y-%m-%d %H:%M}"
              + (f"  failed: {', '.join(r.failed_gates)}" if r.failed_gates else ""))
    return 0


def _lineage(args, settings) -> int:
    from dreamops.registry.lineage import format_lineage, lineage

    _registry(settings)
    info = lineage(args.model, args.version)
    print(json.dumps(info, indent=2, default=str) if args.json else format_lineage(info))
    return 0


def _promote(args, settings) -> int:
    _, promotions = _registry(settings)
    moves = promotions.promote(args.model, args.version, args.to, reason=args.reason, source="cli")
    print(f"{args.model}: {args.to} -> version {args.version}" if moves else f"{args.model}: nothing to do")
    _print_moves(moves)
    return 0


def _rollback(args, settings) -> int:
    _, promotions = _registry(settings)
    moves = promotions.rollback(args.model, to=args.to, reason=args.reason, source="cli")
    print(f"{args.model}: rolled back; production is version {moves[0].to_version}")
    _print_moves(moves)
    return 0


def _history(args, settings) -> int:
    _, promotions = _registry(settings)
    moves = promotions.audit.history(args.model, limit=args.limit)
    if not moves:
        print(f"no alias moves recorded for {args.model!r}")
    for m in moves:
        print(f"{m.at:%Y-%m-%d %H:%M:%S} UTC  {m.alias:<15} {m.from_version or '-':>4} -> {m.to_version or '-':<4} "
              f"{m.outcome:<8} by {m.actor} ({m.source}): {m.reason}")
    return 0


def _reconcile(args, settings) -> int:
    from dreamops.registry.promotion import reconcile_forever

    store, promotions = _registry(settings)
    models = [args.model] if args.model else None
    if args.watch:
        print(f"reconciling aliases every {args.interval:.0f} s (Ctrl-C to stop)", flush=True)
        reconcile_forever(promotions, models, args.interval, on_moves=_print_moves)
        return 0
    for model in models or store.model_names():
        moves = promotions.reconcile(model)
        print(f"{model}: {len(moves)} move(s)")
        _print_moves(moves)
    return 0


def _webhook(args, settings) -> int:
    if not settings.webhook_secret:
        raise ValueError("set DREAMOPS_WEBHOOK_SECRET first: the receiver verifies every delivery with it")
    store, _ = _registry(settings)
    hook_id = store.register_webhook(args.url, settings.webhook_secret)
    print(f"webhook {hook_id} -> {args.url} for {', '.join(store.WEBHOOK_EVENTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

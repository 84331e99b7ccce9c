"""End to end: the same `quick` training run on the code of another commit and on this code, one after
the other on the same machine, each in a fresh home (nothing cached: each collects its data, trains
V, M and C, evaluates on the same seeds and plays the baselines), timed from the command's start to
its registered version.

The default "before" is 3f554a2, the code on the day issue 20 was filed (its `quick` was one round).
This code runs the same config with `--set rounds=1 --set controller_trainer=cma` (`quick` trains C
by actor-critic since session 22; the old code knew CMA-ES only): every key the old code knew
resolves to the same value (the keys added since only act in later rounds), so both collect the same seeds with the
same policies (the data hash is compared), train for the same epochs and CMA-ES generations and
evaluate on the same 8 seeds.

    python bench/bench_end_to_end.py                   # -> bench/results/end-to-end.json (+ the two logs)
    python bench/bench_end_to_end.py --before <commit> --set rounds=8 --json bench/results/end-to-end-quick8.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "end-to-end.json"
BEFORE = "3f554a2"  # session 4's last commit: the code issue 20 was filed against
sys.path.insert(0, str(ROOT / "bench"))


def run_train(name: str, home: Path, pythonpath: Path | None, overrides: list[str], log: Path) -> dict:
    env = {**os.environ, "DREAMOPS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("DREAMOPS_DATABASE_URL", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, "-m", "dreamops.flows.cli", "train", "--agent", "carracing-vmc", "--profile", "quick"]
    for o in overrides:
        cmd += ["--set", o]
    print(f"[{name}] {' '.join(cmd[1:])}  (log: {log})", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.run(cmd, env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    text = log.read_text()
    data = re.search(r"data ([0-9a-f]{16}) at", text)
    ret = re.search(r"mean (?:return|reward)[^\d-]*(-?\d+\.\d+)", text)
    stages = re.search(r"time in the flow[^\n]*", text)
    row = {"code": name, "rc": rc, "wall_s": round(wall, 1), "data_hash": data.group(1) if data else None,
           "mean_return": float(ret.group(1)) if ret else None, "stages": stages.group(0) if stages else None,
           "overrides": overrides, "log_tail": text.strip().splitlines()[-14:]}
    print(f"[{name}] rc {rc}, {wall / 60:.1f} min, data {row['data_hash']}, mean return {row['mean_return']}",
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=BEFORE, help="the commit measured as 'before'")
    p.add_argument("--set", dest="overrides", action="append", default=None,
                   help="config overrides for this code (default: rounds=1, controller_trainer=cma)")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from bench_api import _machine, archive_code
    from quality import run_header

    overrides = args.overrides or ["rounds=1", "controller_trainer=cma"]
    header, start = run_header("bench/bench_end_to_end.py", argv), _machine()
    print(f"end-to-end bench: {args.before} vs {header['commit'][:7]}; {start['uptime']}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dreamops-e2e-bench-") as tmp:
        root = Path(tmp)
        old = archive_code(args.before, root / "before")
        for name, path, sets in (("before", old, []), ("after", None, overrides)):
            home = root / f"home-{name}"
            home.mkdir()
            rows.append(run_train(name, home, path, sets, root / f"{name}.log"))
            (args.json.parent / f"{args.json.stem}-{name}.log").write_text((root / f"{name}.log").read_text())
    before, after = rows
    ratio = before["wall_s"] / after["wall_s"]
    same_data = before["data_hash"] is not None and before["data_hash"] == after["data_hash"]
    print(f"\n{'code':<8}{'wall min':>10}{'data':>20}{'mean return (8 eps)':>22}")
    for r in rows:
        print(f"{r['code']:<8}{r['wall_s'] / 60:>10.2f}{str(r['data_hash']):>20}{str(r['mean_return']):>22}")
    print(f"after is {ratio:.2f}x faster end to end; same data: {same_data}")
    result = {**header, "before_commit": args.before, "load": {"start": start, "end": _machine()},
              "speedup": round(ratio, 3), "same_data": same_data, "runs": rows}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.json}")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""How many steps ahead a carracing-vmc M is trusted (tasks/fidelity.py), for a registered version or
a saved bundle, on its dataset's held-out episodes; the figures every version logs as fidelity/*.

    python bench/fidelity.py --home .dreamops --model latest
    python bench/fidelity.py --home .dreamops --bundle round_0/vmc_bundle.pt --dataset 4552b5f0 --tag round0

Writes bench/results/fidelity-carracing-vmc[-<tag>].json (commit, date, command) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import RESULTS, run_header  # noqa: E402

METRICS = ("latent_nmse", "persistence_latent_nmse", "psnr", "persistence_psnr", "v_psnr", "ssim", "v_ssim")


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Which carracing-vmc M (and V, C, data) a bench reads: a registered version, or a saved bundle."""
    p.add_argument("--home", type=Path, help="DREAMOPS_HOME holding the version and data (default: settings')")
    p.add_argument("--model", default="latest", help="carracing-vmc version or alias whose M, V and data are used")
    p.add_argument("--bundle", type=Path, help="instead of --model: a saved vmc_bundle.pt (e.g. a round's) ...")
    p.add_argument("--dataset", help="... and the hash of the dataset it was trained on (under --home's datasets)")
    p.add_argument("--profile", default="quick", help="with --bundle: the profile whose cma and eval settings apply")


def load_source(args):
    """-> (VMCBundle, its Dataset, the profile's config, a label) for add_source_arguments' options."""
    if (args.bundle is None) != (args.dataset is None):
        raise SystemExit("--bundle and --dataset go together")
    if args.home:
        os.environ["DREAMOPS_HOME"] = str(args.home.resolve())
    from dreamops.models.bundle import VMCBundle
    from dreamops.registry import store
    from dreamops.settings import get_settings
    from dreamops.storage import open_store
    from dreamops.tasks.config import resolve_config
    from dreamops.tasks.dataset import fetch, open_dataset

    settings = get_settings()
    if args.bundle is not None:
        bundle, data_hash, profile, label = VMCBundle.load(args.bundle), args.dataset, args.profile, str(args.bundle)
    else:
        store.configure(settings)
        loaded = store.load_bundle("carracing-vmc", args.model)
        bundle, data_hash = loaded.bundle, loaded.version.tags["data_hash"]
        profile, label = loaded.version.tags.get("profile", "quick"), f"carracing-vmc/{loaded.version.version}"
    path = fetch(open_store(settings), settings.datasets, data_hash)
    return bundle, open_dataset(path.parent, path.name), resolve_config(profile, agent="carracing-vmc"), label


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)

    from dreamops.tasks.fidelity import HORIZONS, fidelity_ratio, gate_horizon, mdn_rollout_fidelity, trusted_horizon

    bundle, data, cfg, model = load_source(args)
    data_hash = data.hash
    _, holdout = data.split(cfg.vae.holdout_fraction, cfg.seed)
    report = mdn_rollout_fidelity(bundle.vae, bundle.mdnrnn, data, holdout, skip_steps=cfg.cma.start_after_steps,
                                  seed=cfg.seed)
    k_gate = gate_horizon(cfg.cma.dream_steps)
    out = {**run_header("bench/fidelity.py", argv), "model": model, "data_hash": data_hash,
           "holdout_episodes": len(holdout), "report": report, "trusted_horizon": trusted_horizon(report),
           "gate_horizon": k_gate, "gate_ratio": fidelity_ratio(report, k_gate)}
    print(f"{'k':>3}" + "".join(f"{m:>25}" for m in METRICS))
    for k in HORIZONS:
        print(f"{k:>3}" + "".join(f"{report[f'fidelity/k{k}/{m}']:>25.3f}" for m in METRICS))
    print(f"{len(holdout)} held-out episodes, {report['fidelity/starts']:.0f} starts; M beats persistence up to "
          f"k = {out['trusted_horizon']}; gate ratio at k = {k_gate}: {out['gate_ratio']:.3f}")
    target = RESULTS / f"fidelity-carracing-vmc{'-' + args.tag if args.tag else ''}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One trained pick-vla policy in several cell set-ups, side by side on the same evaluation seeds.

    python bench/pick_cell.py --model path/to/pick_vla.pt --episodes 100 \
        --variant default --variant floor25 workspace_low=0.3,-0.25,0.025

A variant is a name and PickConfig overrides (`name=v` or `name=a,b,c` for a tuple), or how the
policy executes its chunks (`execute=N`: actions of a chunk executed before re-planning;
`ensemble=M`: ACT's temporal ensembling, a chunk every step, older chunks' weight exp(-M * age);
`temperature=T`: the flow's starting noise scaled by T, 0 for one deterministic chunk;
`planner=cem|mppi`: each chunk refined in the version's world model; with it `collision_weight=W`:
the weight of the imagined collision chance in the planner's score, for versions with a collision head;
`futures=F alpha=A`: every candidate scored over F sampled futures by their CVaR at A (1: their mean);
`members=K disagreement=W`: every candidate also imagined in K world models trained here on the
version's embeddings of --data's episodes, each on a bootstrap resample (tasks.pick_ensemble), the CVaR
over members x futures minus W x their spread; `finetune=STEPS bc=W anchor=flow|chunk`: the policy's flow
head first fine-tuned STEPS updates in the version's own world model by actor-critic, anchored to
--data's labelled chunks at weight W by the flow-matching loss or by the executed chunk's squared error
(tasks.pick_finetune), then played as the policy):

    python bench/pick_cell.py --model pick_vla.pt --variant execute4 --variant execute1 execute=1 \
        --variant ensemble ensemble=0.5

The same weights play `seen` and `novel` on seeds 100000+ in each variant, so the difference
between rows is the cell's or the execution's, not a training draw. Results: bench/results/pick-cell[-<tag>].json (commit, date,
command), rewritten after every variant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import EVAL_SEED, RESULTS, run_header  # noqa: E402


EXECUTION = {"execute": int, "ensemble": float, "temperature": float}   # PickVLAPolicy's fields, not the cell's
PLANNER = ("cem", "mppi")   # planner=KIND: the policy's chunks refined in the world model (models.planners)
PLANNER_SETTINGS = {"collision_weight": float, "futures": int, "alpha": float,
                    "disagreement_weight": float}   # the planner's own fields, with planner=KIND
ALIASES = {"disagreement": "disagreement_weight", "bc": "bc_weight"}
ENSEMBLE = "members"   # members=K: the planner scores in K world models trained by this bench
FINETUNE = {"finetune": int, "bc_weight": float, "anchor": str}   # the policy fine-tuned in its world model here


def parse_variant(parts: list[str]) -> tuple[str, dict, dict]:
    """['floor25', 'workspace_low=0.3,-0.25,0.025', 'execute=2'] -> ('floor25', {'workspace_low':
    (0.3, -0.25, 0.025)}, {'execute': 2}): the cell's overrides and the policy's execution."""
    from dreamops.sim.pick import PickConfig

    name, cell, execution = parts[0], {}, {}
    fields = PickConfig.__dataclass_fields__
    for item in parts[1:]:
        key, sep, value = item.partition("=")
        if sep and key in EXECUTION:
            execution[key] = EXECUTION[key](value)
            continue
        if sep and key == "planner":
            if value not in PLANNER:
                raise SystemExit(f"variant {name!r}: planner must be one of {', '.join(PLANNER)}, got {value!r}")
            execution["planner"] = value
            continue
        key = ALIASES.get(key, key)
        if sep and key == ENSEMBLE:
            execution[ENSEMBLE] = int(value)
            if execution[ENSEMBLE] < 2:
                raise SystemExit(f"variant {name!r}: an ensemble needs members >= 2, got {value}")
            continue
        if sep and key in PLANNER_SETTINGS:
            execution.setdefault("planner_settings", {})[key] = PLANNER_SETTINGS[key](value)
            continue
        if sep and key in FINETUNE:
            execution.setdefault("finetune", {})[key] = FINETUNE[key](value)
            continue
        if not sep or key not in fields:
            raise SystemExit(f"variant {name!r}: {item!r} is not NAME=VALUE with NAME a PickConfig field, "
                             f"{' or '.join(EXECUTION)}")
        values = [float(v) for v in value.split(",")]
        cell[key] = tuple(values) if len(values) > 1 else values[0]
    if ("planner_settings" in execution or ENSEMBLE in execution) and "planner" not in execution:
        needs = list(execution.get("planner_settings", {})) + ([ENSEMBLE] if ENSEMBLE in execution else [])
        raise SystemExit(f"variant {name!r}: {', '.join(needs)} needs planner=KIND")
    if "finetune" in execution:
        tune = execution["finetune"]
        if "finetune" not in tune:
            raise SystemExit(f"variant {name!r}: bc=W and anchor=KIND need finetune=STEPS")
        try:
            finetune_config(tune)
        except ValueError as e:
            raise SystemExit(f"variant {name!r}: {e}") from None
    PickConfig(**cell)   # refuse a bad set-up before any episode runs
    return name, cell, execution


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a saved PickVLA (pick_vla.pt)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME [FIELD=VALUE ...]")
    p.add_argument("--tag", default="")
    p.add_argument("--json", type=Path, help="where to write the results (bench/results/pick-cell[-TAG].json)")
    p.add_argument("--data", type=Path, help="a dataset folder (the version's training data): what members=K train on")
    p.add_argument("--member-steps", type=int, help="training steps per ensemble member (the profile's train.steps)")
    p.add_argument("--profile", default="quick", help="the pick-vla profile whose train settings the members use")
    args = p.parse_args(argv)
    from dreamops.models.pick_vla import PickVLA, PickVLAPolicy
    from dreamops.tasks.evaluate_pick import PickPolicyFactory, evaluate_pick

    variants = [parse_variant(v) for v in args.variant]
    if any(ENSEMBLE in execution or "finetune" in execution for _, _, execution in variants) and args.data is None:
        raise SystemExit("members=K and finetune=STEPS train on the version's data: give --data DATASET_FOLDER")
    model = PickVLA.load(args.model)
    for name, _, execution in variants:   # refuse a bad execution before any episode runs
        try:
            PickVLAPolicy(model, **policy_settings(execution))
        except ValueError as e:
            raise SystemExit(f"variant {name!r}: {e}") from None
    seeds = list(range(EVAL_SEED, EVAL_SEED + args.episodes))
    workers = int(os.environ.get("DREAMOPS_WORKERS", "2"))
    out = (args.json or RESULTS / f"pick-cell{'-' + args.tag if args.tag else ''}.json").resolve()
    result = {"model": str(args.model), **run_header("bench/pick_cell.py", argv),
              "eval_seeds": [seeds[0], seeds[-1]], "variants": []}
    ensembles: dict[int, tuple[list, float]] = {}   # K -> (members, training seconds), trained once per K
    for name, cell, execution in variants:
        settings = policy_settings(execution)
        planner = ({"kind": execution["planner"], **execution.get("planner_settings", {})}
                   if "planner" in execution else None)
        members, train_s = None, 0.0
        if ENSEMBLE in execution:
            k = execution[ENSEMBLE]
            if k not in ensembles:
                ensembles[k] = train_ensemble(model, args.data, k, args.profile, args.member_steps)
            members, train_s = ensembles[k]
        policy_model = model
        if "finetune" in execution:
            policy_model, report, train_s = finetune(model, args.data, execution["finetune"])
        factory = PickPolicyFactory.from_model(policy_model, planner, settings, members, dream=True)
        row = {"variant": name, "cell": {k: list(v) if isinstance(v, tuple) else v for k, v in cell.items()},
               "execution": execution, "ensemble_training_s": round(train_s, 1)}
        if "finetune" in execution:
            row["finetune"] = report
        for object_set in ("seen", "novel"):
            s = evaluate_pick(factory, name, seeds, object_set, 80, workers, cell=cell).summary()
            row[object_set] = {"success": s["success_rate"], "episodes": s["episodes"],
                               "collisions": s["collision_rate"], "failures": s["failures"],
                               "collisions_with": s["collisions_with"],
                               "chunk_latency_p50_ms": s["chunk_latency_p50_ms"],
                               "chunk_latency_p99_ms": s["chunk_latency_p99_ms"], "dream_score": s["dream_score"]}
        row.update(table_keys(row))
        result["variants"].append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{name:>12}  seen {row['seen']['success']:.0%} (collisions {row['seen']['collisions']:.0%})  "
              f"novel {row['novel']['success']:.0%} (collisions {row['novel']['collisions']:.0%})", flush=True)
    print(f"-> {out}")
    return 0


def policy_settings(execution: dict) -> dict:
    """PickVLAPolicy's own fields of a variant's execution (not the planner's, not the ensemble's)."""
    return {k: v for k, v in execution.items() if not k.startswith("planner") and k not in (ENSEMBLE, "finetune")}


def table_keys(row: dict) -> dict:
    """The planners table's columns (the same keys as bench/planners_carracing.py's where they mean the
    same): success and the imagined score of the executed chunks per object set, the chunk latency
    (p50 on `seen`, p99 the worse of the two sets) and the ensemble's training seconds."""
    seen, novel = row["seen"], row["novel"]
    return {"method": row["variant"], "real_seen": seen["success"], "real_novel": novel["success"],
            "collisions_seen": seen["collisions"], "collisions_novel": novel["collisions"],
            "dream_seen": seen["dream_score"], "dream_novel": novel["dream_score"],
            "latency_p50_ms": seen["chunk_latency_p50_ms"],
            "latency_p99_ms": max(seen["chunk_latency_p99_ms"], novel["chunk_latency_p99_ms"]),
            "train_s": row["ensemble_training_s"]}


def train_ensemble(model, data_dir: Path, k: int, profile: str, steps: int | None) -> tuple[list, float]:
    """k world models on every episode of the dataset at data_dir, with the profile's train settings."""
    import time

    from dreamops.tasks.dataset import open_dataset
    from dreamops.tasks.config import resolve_config
    from dreamops.tasks.pick_ensemble import train_pick_members

    data = open_dataset(data_dir.parent, str(data_dir))
    cfg = resolve_config(profile, agent="pick-vla").train
    t0 = time.perf_counter()
    members = train_pick_members(model, data, list(data.manifest["episode_id"]), cfg, k, steps)
    seconds = time.perf_counter() - t0
    print(f"ensemble of {k} trained on {data.n_episodes} episodes in {seconds:.0f} s", flush=True)
    return members, seconds


def finetune_config(settings: dict):
    """A variant's finetune=STEPS bc=W anchor=flow|chunk -> tasks.pick_finetune.PickFinetuneConfig."""
    from dreamops.tasks.pick_finetune import PickFinetuneConfig

    return PickFinetuneConfig(steps=settings["finetune"], bc_weight=settings.get("bc_weight", 1.0),
                              anchor=settings.get("anchor", "flow"))


def finetune(model, data_dir: Path, settings: dict) -> tuple[object, dict, float]:
    """The version with its flow head fine-tuned in its own world model on every labelled frame of
    the dataset at data_dir -> (model, report, seconds with the embedding of the frames)."""
    import time

    from dreamops.tasks.dataset import open_dataset
    from dreamops.tasks.pick_ensemble import embed_demos
    from dreamops.tasks.pick_finetune import finetune_pick_policy
    from dreamops.tasks.train_pick import Demos

    data = open_dataset(data_dir.parent, str(data_dir))
    t0 = time.perf_counter()
    demos = Demos.load(data, list(data.manifest["episode_id"]), model.arch.horizon)
    embeds = embed_demos(model.eval(), demos)
    cfg = finetune_config(settings)
    tuned, report = finetune_pick_policy(model, embeds, demos, cfg)
    seconds = time.perf_counter() - t0
    print(f"fine-tuned {cfg.steps} updates (bc {cfg.bc_weight}, anchor {cfg.anchor}) in {seconds:.0f} s: imagined score of the policy's "
          f"chunks {report['finetune/imagined_before']:.3f} -> {report['finetune/imagined_after']:.3f}", flush=True)
    return tuned, report, seconds


if __name__ == "__main__":
    raise SystemExit(main())

"""Does pick-vla's encoder look at the named object? Its attention's accuracy, trained on more scenes.

    python bench/pick_grounding.py --scenes 600 6000 --steps 1500 --episodes 100 \
        --model path/to/pick_vla.pt

For each --scenes N: a fresh encoder (the `quick` architecture) trains its localisation alone
(tasks.pick_grounding.pretrain_grounding, the same steps for every N) on N rendered `seen` scenes
(seeds 500000+, apart from the demonstrations', the DAgger rounds' and the evaluation's), then the
share of the evaluation scenes (first frames of seeds 100000+, `seen` and `novel`, the same scenes
every pick-vla evaluation plays) where its attention is nearest the named object. 600 is what the
demonstrations of `quick` show (one scene per episode). --model adds a trained version's encoder
on the same scenes. Results: bench/results/pick-grounding[-<tag>].json (commit, date, command).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import EVAL_SEED, RESULTS, run_header  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, nargs="*", default=[600, 6000],
                   help="fresh encoders trained on this many rendered scenes; none (--scenes alone): only --model")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--episodes", type=int, default=100, help="evaluation scenes per object set")
    p.add_argument("--model", type=Path, help="a saved PickVLA whose encoder is measured on the same scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    if min(args.scenes, default=1) < 1 or args.steps < 1 or args.episodes < 1:
        raise SystemExit("--scenes, --steps and --episodes must be >= 1")
    import torch

    from dreamops.models.encoders import WordTokenizer
    from dreamops.models.pick_vla import PickVLA
    from dreamops.tasks.pick_config import PickModelConfig
    from dreamops.tasks.pick_grounding import collect_scenes, grounding_accuracy, grounding_seeds, pretrain_grounding
    from dreamops.tasks.train_pick import architecture

    workers = int(os.environ.get("DREAMOPS_WORKERS", "2"))
    out = RESULTS / f"pick-grounding{'-' + args.tag if args.tag else ''}.json"
    result = {**run_header("bench/pick_grounding.py", argv), "steps": args.steps, "batch_size": args.batch_size,
              "eval_seeds": [EVAL_SEED, EVAL_SEED + args.episodes - 1], "rows": []}

    def write() -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")

    seeds = list(range(EVAL_SEED, EVAL_SEED + args.episodes))
    evaluation = {s: collect_scenes(s, seeds, workers) for s in ("seen", "novel")}
    if args.model:
        model = PickVLA.load(args.model)
        row = {"encoder": f"version {args.model}", **{s: grounding_accuracy(model.encoder, model.tokenizer, sc)
                                                      for s, sc in evaluation.items()}}
        result["rows"].append(row)
        write()
        print(json.dumps(row), flush=True)
    pool = collect_scenes("seen", grounding_seeds(max(args.scenes)), workers) if args.scenes else None
    for n in args.scenes:
        torch.manual_seed(args.seed)
        scenes = pool.subset(n)
        vocab = tuple(WordTokenizer.fit(scenes.instructions).vocab)
        model = PickVLA(architecture(PickModelConfig(), vocab, 21))
        t0 = time.perf_counter()
        fit = pretrain_grounding(model.encoder, model.tokenizer, scenes, args.steps, args.batch_size, seed=args.seed)
        row = {"encoder": f"fresh, {n} scenes", "scenes": n, "train_s": round(time.perf_counter() - t0, 1), **fit,
               "train": grounding_accuracy(model.encoder, model.tokenizer, scenes.subset(min(n, 500))),
               **{s: grounding_accuracy(model.encoder, model.tokenizer, sc) for s, sc in evaluation.items()}}
        result["rows"].append(row)
        write()
        print(json.dumps(row), flush=True)
    print(f"\n{'encoder':<40}{'seen':>8}{'novel':>8}  (attention nearest the named object, scenes with several objects)")
    for r in result["rows"]:
        print(f"{r['encoder'][-40:]:<40}{r['seen']['accuracy_several_objects']:>8.0%}"
              f"{r['novel']['accuracy_several_objects']:>8.0%}")
    print(f"-> {out.relative_to(out.parents[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

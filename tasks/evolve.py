"""evolve_controller: CMA-ES over C's 867 parameters; fitness = mean return of batched dreams.
evolve_checkpoints also keeps the search's mean at several generations, for real episodes to choose."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from dreamops.models.controller import Controller
from dreamops.models.dream import Noise, dream_rollouts, dropout_masks, generator_noise
from dreamops.models.mdnrnn import MDNRNN
from dreamops.tasks.common import MetricSink, no_metrics, progress
from dreamops.tasks.config import CMAConfig
from dreamops.tasks.device import CPU, Compute


def dream_fitness(mdnrnn: MDNRNN, genomes: torch.Tensor, starts: dict[str, torch.Tensor], rollouts: int,
                  steps: int, temperature: float, seed: int, dream_dropout: float = 0.0,
                  done_mode: str = "sampled", common_random_numbers: bool = False) -> torch.Tensor:
    """Mean dream return per genome: all genomes x rollouts stepped as one batch. genomes [P, 867] -> [P].
    With common_random_numbers every candidate meets the same start states, noise and dropout masks
    within a generation, so their ranking reflects the controllers more than the draws.
    The dreams run on M's device; genomes and start states may live on the host, the random
    draws are made there (the same on every device) and the result comes back to the host."""
    p = genomes.shape[0]
    device = next(mdnrnn.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    n_draws = rollouts if common_random_numbers else p * rollouts
    idx = torch.randint(0, starts["z0"].shape[0], (n_draws,), generator=gen)
    noise = generator_noise(n_draws, mdnrnn.latent_dim, seed, device=device)
    masks = dropout_masks(n_draws, mdnrnn.latent_dim, mdnrnn.hidden_dim, dream_dropout, seed, device=device)
    if common_random_numbers:
        idx, noise = idx.repeat(p), _repeated(noise, p)
        masks = None if masks is None else (masks[0].repeat(p, 1), masks[1].repeat(p, 1))
    z0, h0, c0 = (starts[k][idx].to(device) for k in ("z0", "h0", "c0"))
    out = dream_rollouts(mdnrnn, genomes.to(device), z0, h0, c0, steps, temperature,
                         noise, masks=masks, done_threshold=0.5 if done_mode == "threshold" else None)
    return out["returns"].view(p, rollouts).mean(dim=1).cpu()


def _repeated(draw: Noise, times: int) -> Noise:
    """R rows of noise -> P x R rows: candidate i's rollout j gets the same draws for every i."""
    def step(t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(x.repeat(times, *([1] * (x.dim() - 1))) for x in draw(t))
    return step


def checkpoint_generations(generations: int, checkpoints: int, warm: bool) -> list[int]:
    """The generations after which CMA-ES's mean is kept as a candidate controller: `checkpoints`
    evenly spaced, the last always `generations` (the final mean). A warm-started search's first
    checkpoint is generation 0, its starting controller; a search from zeros starts at G/K (the zero
    controller does not drive)."""
    if checkpoints <= 1:
        return [generations]
    if warm:
        return sorted({round(generations * i / (checkpoints - 1)) for i in range(checkpoints)})
    return sorted({max(1, round(generations * (i + 1) / checkpoints)) for i in range(checkpoints)})


def evolve_controller(mdnrnn: MDNRNN, starts: dict[str, torch.Tensor], cfg: CMAConfig, log: MetricSink = no_metrics,
                      show_progress: bool = True, init: Controller | None = None, compute: Compute = CPU,
                      ensemble: list[tuple[MDNRNN, dict[str, torch.Tensor]]] | None = None
                      ) -> tuple[Controller, dict[str, list[float]]]:
    """Returns the controller at CMA-ES's final mean (less exploited by dream noise than the luckiest
    sample) and per-generation fitness history. `init` starts the search at a parent's controller."""
    controllers, history = evolve_checkpoints(mdnrnn, starts, dataclasses.replace(cfg, checkpoints=1), log,
                                              show_progress, init, compute, ensemble)
    return controllers[-1], history


def evolve_checkpoints(mdnrnn: MDNRNN, starts: dict[str, torch.Tensor], cfg: CMAConfig,
                       log: MetricSink = no_metrics, show_progress: bool = True, init: Controller | None = None,
                       compute: Compute = CPU, ensemble: list[tuple[MDNRNN, dict[str, torch.Tensor]]] | None = None
                       ) -> tuple[list[Controller], dict[str, list[float]]]:
    """CMA-ES in the dream, keeping its mean at `cfg.checkpoints` generations
    (`checkpoint_generations`; the last is the final mean) so that real episodes can choose among
    them: the dream's optimum is not always the real one. History: per-generation fitness, and per
    checkpoint its generation and dream return (`checkpoint_generation`, `checkpoint_dream_return`;
    `final_dream_return` is the last checkpoint's). The dreams run on `compute`'s device (fp32
    everywhere: bf16 errors would compound over a 250-step dream); CMA-ES and the controllers stay
    on the CPU. `ensemble`: other Ms with their own start states (tasks.ensemble); each candidate's
    rollouts are then spread evenly over `mdnrnn` and them (`ensemble_fitness`). The checkpoints'
    dream returns are scored in `mdnrnn` alone either way, so they compare with a single-M search."""
    import cma  # here, not at import: dream_fitness (and bench/bench_gpu.py) need only torch

    mdnrnn = compute.module(mdnrnn)
    ensemble = [(compute.module(m), s) for m, s in ensemble or []]
    controller = Controller(mdnrnn.latent_dim, mdnrnn.hidden_dim)
    x0 = np.zeros(controller.n_params) if init is None else init.get_flat().double().numpy()
    keep = checkpoint_generations(cfg.generations, cfg.checkpoints, warm=init is not None)
    es = cma.CMAEvolutionStrategy(x0, cfg.sigma0, {"popsize": cfg.population, "seed": cfg.seed + 1, "verbose": -9})
    history: dict[str, list[float]] = {"best": [], "mean": [], "worst": [], "sigma": []}
    kept: list[np.ndarray] = [x0.copy()] if 0 in keep else []
    with progress(show_progress) as bar:
        task = bar.add_task("evolve C in the dream (CMA-ES)", total=cfg.generations, status="")
        for g in range(cfg.generations):
            solutions = es.ask()
            genomes = torch.as_tensor(np.asarray(solutions), dtype=torch.float32)
            seed = cfg.seed * 100_003 + g
            fitness = (_fitness(mdnrnn, genomes, starts, cfg, cfg.rollouts, seed) if not ensemble else
                       ensemble_fitness([(mdnrnn, starts), *ensemble], genomes, cfg, seed)).numpy()
            es.tell(solutions, (-fitness).tolist())  # cma minimises
            stats = {"cma/best_fitness": float(fitness.max()), "cma/mean_fitness": float(fitness.mean()),
                     "cma/worst_fitness": float(fitness.min()), "cma/sigma": float(es.sigma)}
            for key, name in (("best", "cma/best_fitness"), ("mean", "cma/mean_fitness"),
                              ("worst", "cma/worst_fitness"), ("sigma", "cma/sigma")):
                history[key].append(stats[name])
            log(stats, g)
            if g + 1 in keep:
                kept.append(np.array(es.result.xfavorite, copy=True))
            bar.update(task, advance=1, status=f"best {stats['cma/best_fitness']:.1f} mean {stats['cma/mean_fitness']:.1f}")
    controllers = []
    for flat in kept:
        c = Controller(mdnrnn.latent_dim, mdnrnn.hidden_dim)
        c.set_flat(torch.as_tensor(flat, dtype=torch.float32))
        controllers.append(c)
    # one dream draw (the same seed) for every checkpoint: their dream returns compare like for like
    finals = [_fitness(mdnrnn, c.get_flat().unsqueeze(0), starts, cfg, max(cfg.rollouts, 16), seed=cfg.seed + 7).item()
              for c in controllers]
    history["checkpoint_generation"] = [float(g) for g in keep]
    history["checkpoint_dream_return"] = finals
    history["final_dream_return"] = [finals[-1]]
    log({"cma/final_dream_return": finals[-1]}, cfg.generations)
    return controllers, history


def _fitness(mdnrnn: MDNRNN, genomes: torch.Tensor, starts: dict[str, torch.Tensor], cfg: CMAConfig, rollouts: int,
             seed: int) -> torch.Tensor:
    return dream_fitness(mdnrnn, genomes, starts, rollouts, cfg.dream_steps, cfg.temperature, seed,
                         cfg.dream_dropout, cfg.done_mode, cfg.common_random_numbers)


def ensemble_fitness(members: list[tuple[MDNRNN, dict[str, torch.Tensor]]], genomes: torch.Tensor, cfg: CMAConfig,
                     seed: int) -> torch.Tensor:
    """Each candidate's cfg.rollouts dreams spread evenly over the members (at least one each), each
    member from its own start states with its own draws -> the mean return over all of them [P]."""
    per = max(1, cfg.rollouts // len(members))
    returns = [_fitness(m, genomes, s, cfg, per, seed + 1_009 * j) for j, (m, s) in enumerate(members)]
    return torch.stack(returns).mean(dim=0)


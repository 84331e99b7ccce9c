"""One typed config per `pick-vla` run, with the same profile mechanism as carracing-vmc."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dreamops.tasks.config import RunConfig, _fraction, _positive, check_device_name
from dreamops.tasks.pick_dagger import DaggerConfig
from dreamops.tasks.pick_data import PickDataConfig
from dreamops.validation.data_gate import DataGateThresholds
from dreamops.validation.model_gates import PickGateThresholds


@dataclass
class PickModelConfig:
    embed_dim: int = 256
    """Observation embedding size (the action head's condition and the RSSM's input)."""
    text_dim: int = 64
    """Instruction embedding size (learned word vectors, mean-pooled)."""
    deter: int = 256
    """RSSM deterministic (GRU) state size."""
    stoch: int = 32
    """RSSM stochastic state: this many categorical variables ..."""
    classes: int = 32
    """... with this many classes each."""
    horizon: int = 16
    """Actions per generated chunk."""
    execute: int = 4
    """Actions of each chunk executed before re-planning (receding horizon)."""
    flow_steps: int = 10
    """Euler steps from noise to a chunk at inference."""
    head_hidden: int = 512
    """Width of the flow-matching head's MLP."""
    temperature: float = 0.0
    """Scale of the flow's starting noise when the version acts (saved with it): 1 samples the
    learned distribution of chunks, the demonstrations' action noise included; 0 gives one
    deterministic chunk per observation. Measured on two quick versions, the same weights on the
    same 100 + 100 evaluation seeds (bench/results/pick-cell-exec-r1-*.json): 1 -> 0 took seen
    from 37% to 53% and from 46% to 64%, novel from 47% to 55% and from 50% to 54%."""
    collision_head: bool = False
    """A head on the world model's states that predicts a collision (sim.pick's, over 20 N) during
    the action that led to each state, trained on the data's per-step `collisions`: the planners
    subtract the imagined chance of a collision. Off by default until measured (issue 19)."""

    def validate(self) -> None:
        _positive(self, "embed_dim", "text_dim", "deter", "stoch", "classes", "horizon", "execute", "flow_steps",
                  "head_hidden")
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"model.temperature must be a number >= 0, got {self.temperature!r}")
        if self.execute > self.horizon:
            raise ValueError(f"model.execute ({self.execute}) must not exceed model.horizon ({self.horizon})")


@dataclass
class PickTrainConfig:
    steps: int = 4000
    """Optimiser steps."""
    batch_size: int = 8
    """Sequence windows per step for the world model (each window gives seq_len frames)."""
    frame_batch_size: int = 64
    """Single frames per step for the policy losses, drawn uniformly over every demonstrated step."""
    seq_len: int = 8
    """Frames per window: the RSSM is trained on sequences this long."""
    lr: float = 1e-3
    """AdamW peak learning rate (after warmup; cosine decay to 0 at the last step)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warmup from 0 to lr."""
    grad_clip: float = 1.0
    """Max gradient norm."""
    flow_weight: float = 1.0
    """Weight of the flow-matching loss (seed: 1)."""
    wm_weight: float = 0.5
    """Weight of the world-model loss (seed: 0.5)."""
    grasp_weight: float = 0.1
    """Weight of the grasp-success loss (seed: 0.1)."""
    collision_weight: float = 0.1
    """Weight of the collision head's loss (with model.collision_head)."""
    target_weight: float = 1.0
    """Weight of the auxiliary loss that predicts the named object's position from the embedding
    (a training label from the demonstrations; 0 turns it off)."""
    kl_dyn: float = 0.5
    """KL balancing: weight of the dynamics term (prior towards the stopped posterior)."""
    kl_rep: float = 0.1
    """KL balancing: weight of the representation term (posterior towards the stopped prior)."""
    free_bits: float = 1.0
    """Each KL term is clipped below at this many nats."""
    grounding_scenes: int = 0
    """Render this many `seen` scenes (seeds 500000+, once per run) and add the localisation loss of
    the named object on a batch of them (train.grounding_batch_size, weight train.target_weight) to
    every training step of every round (tasks.pick_grounding): a demonstration shows one scene, so
    600 demonstrations teach the localisation 600 scenes. 0: off. Measured with 3,000 (one seed each):
    attention on the named object 95% / 88% (83% / 80% before); quick one round 57% / 48% (64% / 54%
    without); with 2 DAgger rounds, seed 1: 90% / 65% (76% / 81% without): seen up, novel down."""
    grounding_batch_size: int = 64
    """Rendered scenes per training step, with train.grounding_scenes."""
    grounding_steps: int = 0
    """Steps of a localisation-only pretraining phase on the rendered scenes before round 0 (batches of
    train.grounding_batch_size at train.lr). Measured (quick, seed 0, 3000 scenes, 1500 steps, scenes
    not kept in the batches afterwards): the training that follows undid it (attention 96% -> 83% on
    multi-object seen scenes) and success fell from 64% / 54% to 54% / 47%. 0: off."""
    holdout_fraction: float = 0.1
    """Share of demonstration episodes held out for validation losses and the world-model gate."""
    log_every: int = 50
    """Steps between metric logs."""

    def validate(self) -> None:
        _positive(self, "steps", "batch_size", "frame_batch_size", "grounding_batch_size", "seq_len", "lr", "grad_clip",
                  "log_every")
        _fraction(self, "holdout_fraction")
        for name in ("weight_decay", "warmup_steps", "flow_weight", "wm_weight", "grasp_weight", "target_weight", "kl_dyn",
                     "kl_rep", "free_bits", "collision_weight", "grounding_scenes", "grounding_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass
class PickEvalConfig:
    episodes: int = 50
    """Evaluation episodes per object set (seen and novel), each in the real PyBullet cell."""
    seed: int = 100_000
    """First evaluation seed; disjoint from the demonstrations' seeds."""
    max_steps: int = 80
    """Control steps per evaluation episode (10 Hz)."""
    compare_baselines: bool = True
    """Also run the scripted expert and the no-language baseline on the same seeds."""
    planner: bool = False
    """Also evaluate with the CEM planner over the RSSM (reported, not gated)."""
    latency_iterations: int = 200
    """Timed chunk generations for the latency profile (one CPU thread)."""

    def validate(self) -> None:
        _positive(self, "episodes", "max_steps", "latency_iterations")


@dataclass
class PickGateConfig:
    data: DataGateThresholds = field(default_factory=lambda: DataGateThresholds(
        min_episodes=100, min_frames=2000, min_episode_length=5))
    """Data gate thresholds for the demonstrations."""
    model: PickGateThresholds = field(default_factory=PickGateThresholds)
    """Model gates (validation/model_gates.py)."""

    def validate(self) -> None:
        for name in ("min_episodes", "min_frames", "min_episode_length"):
            if getattr(self.data, name) <= 0:
                raise ValueError(f"gate.data.{name} must be positive, got {getattr(self.data, name)!r}")
        for name in ("seen_success_min", "novel_success_min", "collision_rate_max"):
            if not 0 <= getattr(self.model, name) <= 1:
                raise ValueError(f"gate.model.{name} must be in [0, 1], got {getattr(self.model, name)!r}")


@dataclass
class PickVLAConfig(RunConfig):
    agent: str = "pick-vla"
    """Agent family."""
    profile: str = "quick"
    """Profile this config was resolved from."""
    warehouse_id: str = "default"
    """Warehouse (cell) the run is for."""
    data: PickDataConfig = field(default_factory=PickDataConfig)
    model: PickModelConfig = field(default_factory=PickModelConfig)
    train: PickTrainConfig = field(default_factory=PickTrainConfig)
    eval: PickEvalConfig = field(default_factory=PickEvalConfig)
    gate: PickGateConfig = field(default_factory=PickGateConfig)
    rounds: int = 1
    """Rounds: round 0 trains on the expert's demonstrations; each round k >= 1 plays round k-1's
    policy, lets the expert label the states it visits (DAgger), adds those episodes to the data and
    fine-tunes on all of it. The last round's policy is evaluated and registered."""
    dagger: DaggerConfig = field(default_factory=DaggerConfig)
    seed: int = 0
    """Torch seed for training."""
    device: str = "auto"
    """Where training runs: `auto` (CUDA when torch sees a GPU, else the CPU), `cpu` or `cuda` (an
    error at the start of the run on a machine without CUDA). Training is fp32 on every device;
    the model is saved on the CPU and evaluated in the PyBullet cell on the CPU. The resolved
    device is the run's `device` tag."""

    def validate(self) -> "PickVLAConfig":
        for part in (self.data, self.model, self.train, self.eval, self.gate, self.dagger):
            part.validate()
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds must be an integer >= 1, got {self.rounds!r}")
        check_device_name(self.device)
        return self


PICK_PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: proves the wiring, not the quality.
    "smoke": {
        "data.episodes": 4, "model.embed_dim": 64, "model.deter": 64, "model.stoch": 8, "model.classes": 8,
        "model.head_hidden": 128,
        "train.steps": 4, "train.batch_size": 4, "train.frame_batch_size": 8, "train.seq_len": 4,
        "train.warmup_steps": 1, "train.log_every": 2,
        "train.holdout_fraction": 0.25,
        "eval.episodes": 1, "eval.max_steps": 12, "eval.compare_baselines": False, "eval.latency_iterations": 20,
        "eval.planner": True,   # the planner's path runs in the tests
        "gate.data.min_episodes": 4, "gate.data.min_frames": 20,
        # smoke proves the wiring: its fixed model thresholds pass anything a finished run produces
        "gate.model.seen_success_min": 0.0, "gate.model.novel_success_min": 0.0,
        "gate.model.collision_rate_max": 1.0, "gate.model.chunk_latency_p99_ms_max": 1e6,
        "gate.model.wm_cosine_min": -1.0,
    },
    # Minutes on 2 cores: shows the pipeline learns (far from the full bars).
    "quick": {},
    # quick + 2 DAgger rounds, the expert labelling every state the policy visits: the best measured
    # way here (docs/results/index.md, sessions 13-19): 81% / 80% (seed 0) and 76% / 81% (seed 1) on
    # 100 + 100 episodes, 59-92 min on 2 cores. Below the standard bars (95% / 90%).
    "standard": {"rounds": 3, "dagger.label_every_step": True, "eval.episodes": 100},
    # At most 8 minutes on one large GPU (H200) with 16 CPU cores (DREAMOPS_WORKERS=16). NOT YET RUN on a
    # GPU: planned from quick's measured costs on 2 cores (make pick, 14 min: 600 demonstrations in 2 min
    # 19 s, ~4.3 a second with 2 workers; 4,000 steps in ~8 min, ~120 ms a step) and these assumptions:
    # demonstrations scale with workers (~30 a second with 16); a step is launch-bound on a GPU (~1,000
    # kernels for the encoder twice, 8 sequential RSSM steps, the flow head and AdamW, plus ~12 metric
    # syncs: ~15 ms whatever the batch, so the batch grows towards `full`'s). Estimate: start-up ~20 s;
    # 2,000 demonstrations ~70 s; 12,000 steps ~180 s; 100 evaluation episodes per set for the policy,
    # the expert and the no-language baseline (600 episodes, 16 workers) ~45 s; held-out report,
    # latency, packaging, registration ~30 s: ~6 min. The planner is off (make pick turns it on).
    "gpu": {
        "device": "cuda",
        "data.episodes": 2000, "train.steps": 12_000, "train.batch_size": 16, "train.frame_batch_size": 128,
        "train.warmup_steps": 300, "train.log_every": 200, "eval.episodes": 100,
        "gate.data.min_episodes": 1800, "gate.data.min_frames": 30_000,  # quick has ~19 frames a demonstration
    },
    # The seed's scale and bars; hours (a GPU helps).
    "full": {
        "data.episodes": 5000, "train.steps": 100_000, "train.batch_size": 64, "train.seq_len": 16,
        "train.warmup_steps": 1000, "eval.episodes": 200, "eval.planner": True, "eval.latency_iterations": 1000,
        "gate.data.min_episodes": 4500, "gate.data.min_frames": 90_000,
        "gate.model.seen_success_min": 0.95, "gate.model.novel_success_min": 0.88,
        "gate.model.collision_rate_max": 0.02, "gate.model.wm_cosine_min": 0.83,
    },
}

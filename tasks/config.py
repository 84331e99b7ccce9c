"""One typed config per run for `carracing-vmc`, with named profiles as overlays.

`resolve_config("quick", {"cma.generations": 5})` gives the fully resolved config that is saved
with every run (MLflow params + config.yaml).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from dreamops.families import DEFAULT_FAMILY, family
from dreamops.validation.data_gate import DataGateThresholds
from dreamops.validation.model_gates import ModelGateThresholds

DONE_MODES = ("sampled", "threshold")
ROUND_STARTS = ("latest", "best")
ON_POLICY = "controller"  # the policy name of on-policy episodes in a round's policy mix
DEVICES = ("auto", "cpu", "cuda")  # the run config's `device` (resolved by tasks.device)


def check_device_name(value: object, key: str = "device") -> None:
    """A bad `device` value raises ValueError naming the key and the allowed values."""
    if isinstance(value, bool) or value not in DEVICES:
        raise ValueError(f"{key} must be one of {', '.join(DEVICES)}, got {value!r}")


@dataclass
class CollectConfig:
    episodes: int = 32
    """Real episodes to collect for the world model."""
    max_steps: int = 250
    """Agent steps per collected episode; each is action_repeat simulator frames (the env's own
    limit is 1000 frames)."""
    policy_mix: dict[str, float] = field(default_factory=lambda: {"correlated": 0.25, "noisy_baseline": 0.75})
    """Share of episodes per exploration policy (names from sim.policies.EXPLORATION_POLICIES)."""
    seed: int = 0
    """First episode seed; episode i uses seed + i."""
    action_repeat: int = 4
    """Simulator frames per agent step (frame skip). The paper used 1; 4 makes one latent step
    carry visible motion and a less spiky reward, and a 250-step dream cover a whole 1000-frame
    episode. Stored with the model: the policy repeats its action itself."""
    episodes_per_round: int = 16
    """Real episodes collected in each data round after the first (`rounds` > 1)."""
    round_policy_mix: dict[str, float] = field(default_factory=lambda: {"controller": 0.75, "noisy_baseline": 0.25})
    """Share of a later round's episodes per policy: `controller` is the previous round's V-M-C
    policy with action noise, the others are exploration policies (they keep M's data broad)."""
    controller_noise: float = 0.3
    """Upper end of the per-episode Ornstein-Uhlenbeck noise scale on the controller's steering and
    throttle in on-policy rounds (each episode draws its scale uniformly from [0, this])."""
    validation_as_data: bool = False
    """Record each round's validation episodes (every checkpoint's, played without noise) as data
    that joins the next round's dataset, so no real frame is spent only on choosing. Each round
    then validates on fresh seeds (eval.validation_seed + k * eval.round_episodes on), because a
    round must not be judged on tracks it trained on. Needs episodes of eval.max_steps frames
    (max_steps x action_repeat). episodes_per_round may then be 0."""

    def validate(self) -> None:
        from dreamops.sim.policies import EXPLORATION_POLICIES

        _positive(self, "episodes", "max_steps", "action_repeat")
        if self.episodes_per_round < 0 or (self.episodes_per_round == 0 and not self.validation_as_data):
            raise ValueError(f"collect.episodes_per_round must be positive (or 0 with collect.validation_as_data), "
                             f"got {self.episodes_per_round}")
        for key, mix, allowed in (("policy_mix", self.policy_mix, set(EXPLORATION_POLICIES)),
                                  ("round_policy_mix", self.round_policy_mix,
                                   set(EXPLORATION_POLICIES) | {ON_POLICY})):
            if set(mix) - allowed or not mix or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
                raise ValueError(f"collect.{key} must map {sorted(allowed)} to non-negative shares with a "
                                 f"positive sum, got {mix}")
        if self.controller_noise < 0:
            raise ValueError(f"collect.controller_noise must be >= 0, got {self.controller_noise}")


@dataclass
class VAEConfig:
    latent_dim: int = 32
    """Size of z."""
    beta: float = 1.0
    """Weight of the KL term."""
    kl_tolerance: float = 0.5
    """Free bits per latent dim: KL below kl_tolerance * latent_dim nats is not penalised."""
    epochs: int = 4
    """Passes over the training frames. 0 reuses a parent version's V unchanged (`--parent`)."""
    batch_size: int = 64
    """Frames per optimiser step."""
    lr: float = 1e-3
    """Adam learning rate."""
    holdout_fraction: float = 0.1
    """Share of episodes held out for validation losses (and gates)."""
    round_epochs: int = 0
    """Fine-tuning passes over all data so far in each later round (warm start). 0 keeps round 0's
    V, so the latent space the controller reads does not move under it."""

    def validate(self) -> None:
        _positive(self, "latent_dim", "batch_size", "lr")
        if self.epochs < 0 or self.round_epochs < 0:
            raise ValueError(f"vae.epochs and vae.round_epochs must be >= 0, got {self.epochs}, {self.round_epochs}")
        _fraction(self, "holdout_fraction")
        if self.beta < 0 or self.kl_tolerance < 0:
            raise ValueError("vae.beta and vae.kl_tolerance must be >= 0")


@dataclass
class MDNConfig:
    hidden_dim: int = 256
    """LSTM hidden size."""
    n_gaussians: int = 5
    """Mixture components per latent dimension."""
    seq_len: int = 32
    """Truncated-BPTT window."""
    batch_size: int = 4
    """Episodes per batch; each batch gives one optimiser step per seq_len window."""
    epochs: int = 40
    """Passes over the encoded episodes."""
    lr: float = 1e-3
    """Adam learning rate."""
    grad_clip: float = 1.0
    """Max gradient norm."""
    reward_weight: float = 1.0
    """Weight of the reward-head MSE in M's loss."""
    done_weight: float = 1.0
    """Weight of the done-head BCE in M's loss."""
    skip_start_reward: bool = True
    """Do not learn the reward of CarRacing's start-of-episode zoom-in (first 50 frames): there the
    standing car is credited its starting tiles, which teaches M that a car that does not move earns
    reward (CMA-ES then finds a creeping controller)."""
    dropout: float = 0.0
    """Dropout on M's LSTM output (before the heads) while training; with cma.dream_dropout it
    makes the dream a distribution of plausible models (Dropout's Dream Land)."""
    round_epochs: int = 15
    """Fine-tuning passes over all data so far in each later round (warm start from the last M)."""

    def validate(self) -> None:
        _positive(self, "hidden_dim", "n_gaussians", "seq_len", "batch_size", "epochs", "lr", "grad_clip",
                  "round_epochs")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"mdn.dropout must be in [0, 1), got {self.dropout}")


CONTROLLER_TRAINERS = ("cma", "actor_critic")


@dataclass
class ActorCriticConfig:
    """C trained in M's dream by actor-critic (tasks/actor_critic.py; DreamerV3's defaults where they
    carry over: lambda 0.95, discount 1 - 1/333, entropy 3e-4, percentile return scale), with
    `controller_trainer: actor_critic`. The dream's temperature and length are cma's."""
    SECTION = "ac"   # its keys: ac.updates, ...
    updates: int = 600
    """Actor and critic updates, each after `horizon` dream steps of every row."""
    batch: int = 256
    """Dream rows stepped together (restarted from real start states when they end)."""
    horizon: int = 15
    """Dream steps per update; the critic bootstraps after them (DreamerV3: 15)."""
    discount: float = 0.997
    """gamma (DreamerV3: 1 - 1/333)."""
    lam: float = 0.95
    """lambda of the TD(lambda) targets."""
    actor_lr: float = 1e-3
    """Adam learning rate of the linear controller and its exploration std."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic."""
    entropy: float = 3e-4
    """Weight of the actor's entropy bonus."""
    init_std: float = 0.3
    """Initial exploration std of the Gaussian around the controller's tanh output."""
    min_std: float = 0.05
    max_std: float = 1.0
    critic_hidden: int = 256
    grad_clip: float = 10.0
    log_every: int = 10
    round_updates: int = 300
    """Updates in each later round, warm-started from the previous round's controller (a fresh critic)."""
    round_actor_lr: float | None = None
    """The actor's learning rate in each later (warm) round; None (the default) keeps `actor_lr`. Adam moves every one of the linear
    controller's 867 weights by about the learning rate a step, whatever its gradient's size, so a
    controller that already drives can be moved far in a few hundred updates; a smaller value keeps
    a warm round near its start. Measured at 1e-4 over `quick` (2 seeds x 100 episodes): 467.1 / 579.5
    against 851.8 / 852.9, the flywheel stalls (docs/results, session 22), so by default warm rounds
    keep `actor_lr`."""
    round_critic_warmup: int = 0
    """Critic-only updates at the start of each warm round, before the `round_updates`: the new critic
    learns the start controller's values first, so the first actor updates are not steered by an
    untrained critic (each costs a dream batch, ~0.05 s on 2 cores). Measured at 100 over `quick`
    (2 seeds x 100 episodes): warm updates beat the start controller in 7 of 14 rounds instead of
    1, the shipped versions drive the same (854.3 pooled against 852.3), so off by default."""

    def validate(self) -> None:
        _positive(self, "updates", "batch", "horizon", "actor_lr", "critic_lr", "init_std", "min_std", "max_std",
                  "critic_hidden", "grad_clip", "log_every", "round_updates")
        lr = self.round_actor_lr
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
            raise ValueError(f"ac.round_actor_lr must be a positive number (or null), got {lr!r}")
        for name in ("discount", "lam"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"ac.{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.entropy < 0:
            raise ValueError(f"ac.entropy must be >= 0, got {self.entropy!r}")
        if self.round_critic_warmup < 0:
            raise ValueError(f"ac.round_critic_warmup must be >= 0, got {self.round_critic_warmup!r}")
        if not self.min_std <= self.init_std <= self.max_std:
            raise ValueError(f"ac.init_std must be within [ac.min_std, ac.max_std], got {self.init_std!r}")


@dataclass
class CMAConfig:
    population: int = 32
    """Candidates per generation."""
    rollouts: int = 8
    """Dream rollouts per candidate (fitness is their mean)."""
    generations: int = 60
    """CMA-ES generations."""
    dream_steps: int = 250
    """Steps per dream rollout."""
    temperature: float = 1.45
    """tau: mixture sampling temperature; > 1 makes the dream harder to exploit (the paper used
    1.15 for Doom; on CarRacing 1.15 let CMA-ES find a throttle+brake exploit, see README)."""
    sigma0: float = 0.1
    """Initial CMA-ES step size."""
    start_after_steps: int = 50
    """Dreams start from real (z, h) at least this many agent steps into an episode. Measured on
    one trained M, 8 real episodes, two CMA seeds: starting after 50 steps (steady driving) gave
    275.6 and 252.2; starting right after the zoom-in (13 steps) gave 119.3 and -69.4 (stalls)."""
    seed: int = 0
    """Seed of CMA-ES and the dream noise."""
    dream_dropout: float = 0.0
    """Dropout probability on M's hidden state inside the dream, one mask per dream rollout for the
    whole rollout (Dropout's Dream Land): each rollout dreams in a slightly different M, so a
    controller cannot exploit one model's quirks. 0 = the plain dream."""
    done_mode: str = "sampled"
    """How the done head ends a dream: `sampled` (a Bernoulli draw of its probability each step) or
    `threshold` (the dream ends when the probability exceeds 0.5)."""
    common_random_numbers: bool = False
    """All candidates of a generation dream from the same start states with the same noise (and
    dropout masks), so fitness differences come from the controllers, not from the draws."""
    round_generations: int = 30
    """CMA-ES generations in each later round, warm-started from the previous round's controller."""
    round_sigma0: float = 0.05
    """Initial step size of a later round's warm-started CMA-ES."""
    checkpoints: int = 1
    """Controllers each round keeps from its CMA-ES search: the mean at this many evenly spaced
    generations (the last is the final mean; a warm-started round's first is its starting
    controller); with `controller_trainer: actor_critic`, the actor's mean at as many updates. In a
    multi-round run every one plays the validation episodes and the best becomes the round's
    controller: early stopping on real returns, so that a dream optimum that does not transfer (a
    collapse) cannot replace a controller that drove. 1 = the final mean, as is every one-round run
    (it plays no validation episodes to choose with)."""
    round_temperature: float | None = None
    """tau in later rounds; None keeps `temperature`. Round 0's M has seen only exploration data
    and needs a hard dream; a later M has seen the controller's own driving, so a dream closer to
    the mean may stay honest and reward faster driving."""

    def validate(self) -> None:
        _positive(self, "population", "rollouts", "generations", "dream_steps", "temperature", "sigma0",
                  "round_generations", "round_sigma0", "checkpoints")
        t = self.round_temperature
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0):
            raise ValueError(f"cma.round_temperature must be a positive number (or null), got {t!r}")
        if not 0 <= self.dream_dropout < 1:
            raise ValueError(f"cma.dream_dropout must be in [0, 1), got {self.dream_dropout}")
        if self.done_mode not in DONE_MODES:
            raise ValueError(f"cma.done_mode must be one of {', '.join(DONE_MODES)}, got {self.done_mode!r}")
        if self.start_after_steps < 0:
            raise ValueError(f"cma.start_after_steps must be >= 0, got {self.start_after_steps}")
        if self.population < 2:
            raise ValueError(f"cma.population must be >= 2, got {self.population}")


@dataclass
class EvalConfig:
    episodes: int = 8
    """Real-environment evaluation episodes."""
    max_steps: int = 1000
    """Simulator frames per evaluation episode (CarRacing's own limit)."""
    seed: int = 100_000
    """First evaluation seed; disjoint from collection seeds."""
    compare_baselines: bool = True
    """Also evaluate the random and rule-based policies on the same seeds."""
    latency_iterations: int = 500
    """Timed full V-M-C steps for the latency profile."""
    round_episodes: int = 8
    """Validation episodes of each round's controller in a multi-round run (the learning curve and
    the choice of the round to keep); the shipped version is evaluated on `episodes`."""
    validation_seed: int = 50_000
    """First validation seed; disjoint from the collection and evaluation seeds, so choosing a round
    never sees the episodes the reported figure comes from."""
    keep_best_round: bool = True
    """Ship the round whose controller scored best on the validation episodes (the earliest on a
    tie), not necessarily the last. False ships the last round whatever it scored."""

    def validate(self) -> None:
        _positive(self, "episodes", "max_steps", "latency_iterations", "round_episodes")
        # validation against evaluation seeds: CarRacingConfig.validate checks every round's validation seeds


@dataclass
class GateConfig:
    data: DataGateThresholds = field(default_factory=DataGateThresholds)
    """Data gate thresholds (validation/data_gate.py); checked before any training."""
    model: ModelGateThresholds = field(default_factory=ModelGateThresholds)
    """Model gate thresholds (validation/model_gates.py); checked before a version may be staged."""

    def validate(self) -> None:
        d, m = self.data, self.model
        for name in ("min_episodes", "min_frames", "min_episode_length"):
            if getattr(d, name) <= 0:
                raise ValueError(f"gate.data.{name} must be positive, got {getattr(d, name)!r}")
        for name in ("corrupt_pixel_fraction", "max_corrupt_frame_fraction"):
            if not 0 <= getattr(d, name) < 1:
                raise ValueError(f"gate.data.{name} must be in [0, 1), got {getattr(d, name)!r}")
        if m.vae_kl_min > m.vae_kl_max:
            raise ValueError(f"gate.model.vae_kl_min ({m.vae_kl_min}) must not exceed gate.model.vae_kl_max ({m.vae_kl_max})")
        for name in ("latency_p99_ms_max", "vae_recon_vs_production", "mdn_loglik_vs_production",
                     "mdn_fidelity_vs_persistence_max"):
            if getattr(m, name) <= 0:
                raise ValueError(f"gate.model.{name} must be positive, got {getattr(m, name)!r}")
        if isinstance(m.mdn_fidelity_horizon, bool) or not isinstance(m.mdn_fidelity_horizon, int) \
                or m.mdn_fidelity_horizon < 1:
            raise ValueError("gate.model.mdn_fidelity_horizon must be an integer >= 1, "
                             f"got {m.mdn_fidelity_horizon!r}")


class RunConfig:
    """What every family's run config shares: serialisation for MLflow params and config.yaml."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """Flat dotted keys, for MLflow params (mappings such as policy_mix stay one value)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and not prefix.split(".")[-1].endswith("policy_mix"):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = value
        walk("", self.to_dict())
        return out


@dataclass
class CarRacingConfig(RunConfig):
    agent: str = "carracing-vmc"
    """Agent family."""
    profile: str = "quick"
    """Profile this config was resolved from."""
    warehouse_id: str = "default"
    """Warehouse the run is for (tag on the model version)."""
    collect: CollectConfig = field(default_factory=CollectConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    mdn: MDNConfig = field(default_factory=MDNConfig)
    cma: CMAConfig = field(default_factory=CMAConfig)
    ac: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    controller_trainer: str = "cma"
    """How C is trained in M's dream: `cma` (CMA-ES, the paper's) or `actor_critic` (tasks/actor_critic.py).
    Measured over the whole 8-round `quick` profile, training seeds 0 / 1, 100 real episodes each:
    actor-critic 816.6 / 854.2, CMA-ES 799.4 / 645.5 (docs/results, session 21), so `quick` trains C by
    actor-critic; the other profiles keep CMA-ES until they are measured with it."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    seed: int = 0
    """Training seed: V and M initialisation and batches, the holdout split, dream starts, CMA-ES
    and its dream noise (cma.seed is added to it)."""
    rounds: int = 1
    """Data-flywheel rounds. Round 0 collects with the exploration policies and trains V, M, C; each
    later round collects collect.episodes_per_round episodes with a previous round's controller
    (`round_start`), adds them to the dataset (a new content hash), fine-tunes V and M on all data
    and re-evolves C warm. One round is registered: the best on the validation episodes
    (eval.keep_best_round) or the last."""
    round_start: str = "latest"
    """The round whose models the next round collects with and warm-starts from: `latest` (the
    flywheel keeps moving; a worse controller's episodes still show M where it is wrong) or `best`
    (the champion on the validation episodes)."""
    device: str = "auto"
    """Where V, encoding, M and the CMA-ES dreams run: `auto` (CUDA when torch sees a GPU, else
    the CPU), `cpu` or `cuda` (an error at the start of the run on a machine without CUDA). Data
    stays uint8 on the host and moves per batch; models are saved on the CPU, and evaluation in
    the simulator always runs on the CPU. The resolved device is the run's `device` tag."""
    bf16: bool = True
    """On CUDA, autocast V's forward and M's LSTM forward to bf16 in training (losses, M's heads,
    encoding and the dream stay fp32). Ignored on the CPU, which always trains in fp32."""

    def for_round(self, k: int) -> "CarRacingConfig":
        """The config round k trains with. Round 0: the profile's budget, from scratch (or the
        parent). A later round fine-tunes V and M warm for their round_epochs and re-evolves C warm
        for cma.round_generations from cma.round_sigma0. The CMA-ES seed follows the training seed
        and the round, so seed 1 is not seed 0's search with other weights."""
        cma_seed = self.cma.seed + self.seed + 1_000 * k
        # a one-round run plays no validation episodes to choose a checkpoint with: the final mean
        checkpoints = self.cma.checkpoints if self.rounds > 1 else 1
        if k == 0:
            return dataclasses.replace(self, cma=dataclasses.replace(self.cma, seed=cma_seed, checkpoints=checkpoints))
        return dataclasses.replace(
            self, ac=dataclasses.replace(self.ac, updates=self.ac.round_updates,
                                         actor_lr=self.ac.actor_lr if self.ac.round_actor_lr is None
                                         else self.ac.round_actor_lr),
            vae=dataclasses.replace(self.vae, epochs=self.vae.round_epochs),
            mdn=dataclasses.replace(self.mdn, epochs=self.mdn.round_epochs),
            cma=dataclasses.replace(self.cma, seed=cma_seed, generations=self.cma.round_generations,
                                    sigma0=self.cma.round_sigma0, checkpoints=checkpoints,
                                    temperature=self.cma.round_temperature or self.cma.temperature))

    def max_real_frames(self) -> int:
        """The most simulator frames the collectors can play (exploration and noisy on-policy
        episodes at full length; episodes that end early use fewer). Validation episodes apart."""
        c = self.collect
        return (c.episodes + (self.rounds - 1) * c.episodes_per_round) * c.max_steps * c.action_repeat

    def max_validation_frames(self) -> int:
        """The most simulator frames the rounds' validation episodes can play (none in one round),
        whether or not they become data (collect.validation_as_data)."""
        per_round = self.cma.checkpoints * self.eval.round_episodes * self.eval.max_steps
        return self.rounds * per_round if self.rounds > 1 else 0

    def max_total_frames(self) -> int:
        """Every real simulator frame a training run may play: the budget a profile is held to."""
        return self.max_real_frames() + self.max_validation_frames()

    def validation_seeds(self, k: int) -> list[int]:
        """Round k's validation seeds: the same every round, or fresh ones when they become data."""
        first = self.eval.validation_seed + (k * self.eval.round_episodes if self.collect.validation_as_data else 0)
        return list(range(first, first + self.eval.round_episodes))

    def validate(self) -> "CarRacingConfig":
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.round_start not in ROUND_STARTS:
            raise ValueError(f"round_start must be one of {', '.join(ROUND_STARTS)}, got {self.round_start!r}")
        check_device_name(self.device)
        if self.controller_trainer not in CONTROLLER_TRAINERS:
            raise ValueError(f"controller_trainer must be one of {', '.join(CONTROLLER_TRAINERS)}, "
                             f"got {self.controller_trainer!r}")
        for part in (self.collect, self.vae, self.mdn, self.cma, self.ac, self.eval, self.gate):
            part.validate()
        c, e = self.collect, self.eval
        if c.validation_as_data and c.max_steps * c.action_repeat != e.max_steps:
            raise ValueError(f"collect.validation_as_data: validation episodes become data, so collect.max_steps x "
                             f"collect.action_repeat ({c.max_steps * c.action_repeat}) must equal eval.max_steps "
                             f"({e.max_steps})")
        collected = range(c.seed, c.seed + c.episodes + (self.rounds - 1) * c.episodes_per_round)
        n_validation = e.round_episodes * (self.rounds if c.validation_as_data else 1)
        validation = range(e.validation_seed, e.validation_seed + n_validation)
        if validation.start < e.seed + e.episodes and e.seed < validation.stop:
            raise ValueError(f"eval.validation_seed: validation seeds {validation.start}-{validation.stop - 1} overlap "
                             f"the evaluation seeds {e.seed}-{e.seed + e.episodes - 1}")
        for name, first, n in (("eval.seed", e.seed, e.episodes), ("eval.validation_seed", e.validation_seed,
                                                                    n_validation)):
            if first < collected.stop and collected.start < first + n:
                raise ValueError(f"{name}: seeds {first}-{first + n - 1} overlap the collection seeds "
                                 f"{collected.start}-{collected.stop - 1}")
        return self



PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: proves the wiring, not the quality.
    "smoke": {
        "collect.episodes": 4, "collect.max_steps": 60,
        "vae.epochs": 1, "vae.batch_size": 32, "vae.holdout_fraction": 0.25,
        "mdn.epochs": 1, "mdn.seq_len": 16, "mdn.batch_size": 4,
        "cma.population": 4, "cma.rollouts": 2, "cma.generations": 2, "cma.dream_steps": 20,
        "eval.episodes": 2, "eval.max_steps": 60, "eval.compare_baselines": False,
        "eval.latency_iterations": 50,
        "gate.data.min_episodes": 4, "gate.data.min_frames": 200,
        # smoke proves the wiring: its fixed model thresholds pass anything a finished run produces
        "gate.model.vae_recon_max": 1e6, "gate.model.vae_kl_min": 0.0, "gate.model.vae_kl_max": 1e6,
        "gate.model.mdn_nll_max": 1e6, "gate.model.dream_reward_min": -1e6, "gate.model.real_reward_min": -1e6,
        "gate.model.off_track_per_episode_max": 1e6, "gate.model.mdn_fidelity_vs_persistence_max": 1e6,
        # a step timed on a shared 2-core CI runner beside another test worker may pass quick's 80 ms
        "gate.model.latency_p99_ms_max": 1e6,
    },
    # Minutes on 2 cores: the main job's default. Seven on-policy rounds after the exploration
    # round, each keeping CMA-ES's mean at 3 generations and judging them on 8 validation
    # episodes; the best round ships. Measured over 3 training seeds x 100 episodes in
    # docs/results/flywheel.md: on 16 validation episodes 571 / 654 / 767 (an AMD machine, where
    # the final mean alone gave 382 / 578 / 538), on 8 episodes 591 / 817 / 456 (an Intel
    # machine, other draws) for half the validation time (about 28 s a round instead of 55).
    # V keeps its 4 epochs: with 3, seed 0 reached 377 where 4 epochs reached 752 (30 episodes).
    # C by actor-critic in the dream (session 21, the same machine and seeds, 100 episodes each):
    # 816.6 / 854.2 against CMA-ES's 799.4 / 645.5; its checkpoints are the actor at 3 updates.
    "quick": {"rounds": 8, "eval.round_episodes": 8, "cma.checkpoints": 3, "controller_trainer": "actor_critic"},
    # At most 90 minutes and 200k real frames on 2 cores, validation episodes included: quick's
    # round 0 (the same cached data, 32k frames), then quick's loop with every validation episode
    # recorded as data (collect.validation_as_data) and a smaller noisy on-policy collection: 7
    # rounds x 2 checkpoints x 8 validation episodes (112k) + 6 x 8 noisy episodes (48k) = 192k at
    # most. The best of three ways measured to spend 200k frames (docs/results/flywheel.md): with
    # validation alone as data (3 checkpoints, no noisy episodes) the flywheel collapsed (419.2 on
    # seed 0); with 20 noisy episodes and 6 validation episodes per round on one checkpoint it
    # fell from 261.7 to 166.5 and 174.0 in two rounds (stopped). None reaches the bar of 800.
    "standard": {
        "rounds": 7, "collect.episodes_per_round": 8, "collect.validation_as_data": True,
        "cma.checkpoints": 2, "eval.round_episodes": 8,
        "eval.episodes": 100, "eval.latency_iterations": 1000,
        "gate.model.real_reward_min": 700.0,
    },
    # At most 8 minutes on one large GPU (H200) with 16 CPU cores (DREAMOPS_WORKERS=16). NOT YET RUN on a
    # GPU: planned from quick's measured stage costs on 2 cores (make run, 8 rounds, 10 min 45 s:
    # collection 3.5 min for 144 episodes = 144k frames, about 690 frames/s with 2 workers; V 1.6 min for 4
    # epochs of ~7k frames; M 1.3 min for ~21k optimiser steps, ~3.8 ms a step; C 1.8 min for 270
    # generations x 256 rows x 250 steps, ~160k dream row-steps/s; evaluation 3 min for ~136k frames plus
    # baselines), with these assumptions for the GPU machine: simulators scale with workers (16 workers
    # ~8x the 2-worker rate: ~5.5k frames/s collecting, ~8k evaluating V-M-C, ~2k the rule-based
    # baseline); a V step at batch 64 and an M step at batch 4-8 are launch-bound on a GPU (~4 ms and
    # ~3 ms whatever the batch: M gains little, so its optimiser steps stay near quick's ~21k); a dream
    # step costs ~0.3 ms up to a few thousand rows (so C can afford the paper's 64 x 16).
    # Estimate: start-up ~20 s; collect 288 episodes (64 + 7 x 32) ~90 s with a pool start per round;
    # data gates ~30 s; V 8 epochs of ~14k frames ~15 s; encoding ~10 s; M ~21k steps (batch 8, twice
    # quick's data) ~65 s; dream start states (CPU) ~12 s; C 380 generations x 1024 rows ~30 s;
    # validation 8 x 16 episodes ~55 s; evaluation on 100 episodes + baselines ~75 s (the baselines
    # are cached by seeds afterwards); latency, packaging, registration ~25 s: ~7 min, 1 min of margin.
    # If a measured run is over: fewer rounds first (each ~35 s), then collect.episodes_per_round.
    # bench/gpu.sh runs it and measures each training stage on the CPU and the GPU side by side.
    "gpu": {
        "device": "cuda", "rounds": 8,
        "collect.episodes": 64, "collect.episodes_per_round": 32,
        "vae.epochs": 8,
        "mdn.batch_size": 8,
        "cma.population": 64, "cma.rollouts": 16, "cma.generations": 100, "cma.round_generations": 40,
        "eval.episodes": 100, "eval.round_episodes": 16,
    },
    # The paper's scale: 10k rollouts, CMA-ES population 64 x 16 dream rollouts; hours.
    "full": {
        "collect.episodes": 10_000, "collect.max_steps": 250,
        "vae.epochs": 10, "vae.batch_size": 100,
        "mdn.epochs": 20, "mdn.seq_len": 64, "mdn.batch_size": 64,
        "cma.population": 64, "cma.rollouts": 16, "cma.generations": 300, "cma.dream_steps": 1000,
        "eval.episodes": 100, "eval.latency_iterations": 2000,
        "gate.data.min_episodes": 9000, "gate.data.min_frames": 2_000_000,
        "gate.model.dream_reward_min": 800.0, "gate.model.real_reward_min": 800.0,
        "gate.model.off_track_per_episode_max": 0.0,
    },
}


def resolve_config(profile: str, overrides: dict[str, Any] | None = None, agent: str = DEFAULT_FAMILY) -> Any:
    """The agent family's default config + the profile's overlay + explicit overrides (dotted keys),
    validated. -> the family's RunConfig (dreamops.families names its class and profile table)."""
    fam = family(agent)
    fam.check_profile(profile)
    make, overlay = fam.load("config"), fam.load("profile_table")[profile]
    cfg = make(profile=profile)
    for key, value in {**overlay, **(overrides or {})}.items():
        _set_dotted(cfg, key, value)
    return cfg.validate()


def parse_override(text: str) -> tuple[str, Any]:
    """'cma.generations=5' -> ('cma.generations', 5); values are parsed as YAML."""
    if "=" not in text:
        raise ValueError(f"override must look like key=value, got {text!r}")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw)
    if isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    return key.strip(), value


def _set_dotted(cfg: Any, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    target = cfg
    for name in parents:
        if not dataclasses.is_dataclass(target) or not hasattr(target, name):
            raise ValueError(f"unknown config key {key!r}")
        target = getattr(target, name)
    fields = {f.name: f for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else {}
    if leaf not in fields or dataclasses.is_dataclass(getattr(target, leaf)):
        raise ValueError(f"unknown config key {key!r}")
    current = getattr(target, leaf)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
    elif isinstance(current, int):
        if not is_number or not float(value).is_integer():
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}")
        value = int(value)
    elif isinstance(current, float):
        if not is_number:
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        value = float(value)
    setattr(target, leaf, value)


def _section(obj: Any) -> str:
    """A config section's name in dotted keys: CollectConfig -> collect, PickTrainConfig -> train, or
    the class's SECTION."""
    return getattr(type(obj), "SECTION", None) or type(obj).__name__.removesuffix("Config").removeprefix("Pick").lower()


def _positive(obj: Any, *names: str) -> None:
    section = _section(obj)
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{section}.{name} must be positive, got {value!r}")


def _fraction(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not 0 < value < 1:
        raise ValueError(f"{_section(obj)}.{name} must be in (0, 1), got {value!r}")

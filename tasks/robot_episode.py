"""One episode as a robot measures it, for the simulated fleet (dreamops.fleet reports it to the
API) and drift-eval: what every family's robot reports (`EpisodeMeasures`, a sample of latents),
how a robot is set up (`RobotSetup`), and carracing-vmc's robot: its return, off-track events,
latency per decision (in the playing thread's CPU time), M's residual, a sample of V's latents,
the episode as the upload body, and its injectable faults. No network here.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np
import torch

from dreamops.models.vae import VAE
from dreamops.shards import SHARD_ARRAYS
from dreamops.sim.carracing import SCENARIOS, CarRacing
from dreamops.sim.rollout import Episode, Policy, count_off_track_events, play_episode
from dreamops.tasks.train_mdnrnn import ZOOM_FRAMES


class BrokenController:
    """Steers hard right at full throttle, whatever the model says: off the track within ~40 frames.
    The real model still runs on every frame, so the version's latency is what is reported."""

    ACTION = np.array([1.0, 1.0, 0.0], np.float32)

    def __init__(self, policy: Policy):
        self.policy = policy
        self.action_repeat = getattr(policy, "action_repeat", 1)

    def reset(self, seed: int) -> None:
        self.policy.reset(seed)

    def act(self, frame: np.ndarray) -> np.ndarray:
        self.policy.act(frame)
        return self.ACTION.copy()

    def diagnostics(self) -> dict:
        return _diagnostics(self.policy)


def _diagnostics(policy) -> dict:
    """The wrapped policy's per-step diagnostics (the VMC policy's M residual), if it has any."""
    return getattr(policy, "diagnostics", dict)()


FAULTS: dict[str, Callable[[Policy], Policy]] = {"broken_controller": BrokenController}


def check_fault(name: str, known=FAULTS) -> str:
    if name not in known:
        raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(sorted(known))}")
    return name


def with_fault(policy: Policy, fault: str) -> Policy:
    return FAULTS[check_fault(fault)](policy)


@dataclass(frozen=True)
class RobotSetup:
    """How the fleet sets up one robot for one version (any family)."""
    max_steps: int               # simulator frames (carracing-vmc) or control steps (pick-vla) per episode
    scenario: str                # one of the family robot's SCENARIOS
    latent_sample: int           # latents reported per episode, for the drift checks
    fault: str | None = None     # one of the family robot's FAULTS, injected into this version


class _Timed:
    """Times every act() of the policy it wraps, in this thread's CPU time: a real robot has its own
    CPU, while simulated robots share a few cores and one GIL, and wall-clock time would count the
    other robots' physics as this robot's inference latency (measured: p99 spikes to 650 ms with 4
    robot threads next to a training run on 2 cores)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.seconds: list[float] = []

    def reset(self, seed: int) -> None:
        self.policy.reset(seed)
        self.seconds.clear()

    def act(self, frame: np.ndarray) -> np.ndarray:
        start = time.thread_time()
        action = self.policy.act(frame)
        self.seconds.append(time.thread_time() - start)
        return action

    def diagnostics(self) -> dict:
        return getattr(self.policy, "diagnostics", dict)()


@dataclass(frozen=True)
class EpisodeMeasures:
    """The fields of the API's EpisodeReport (the fleet sends them as one; this layer does not know
    the API's schemas)."""
    seed: int
    reward: float
    collisions: int            # off-track events (CarRacing's collisions)
    steps: int
    latency_p50_ms: float
    latency_p99_ms: float
    residual: float | None     # mean |M's predicted next z - encoded z| after the zoom-in
    ended_at: datetime
    success_prob: float | None = None  # the success head's probability that the episode succeeded

    def fields(self) -> dict:
        return asdict(self)


@dataclass
class MeasuredEpisode:
    episode: Episode | None      # carracing-vmc's played episode (its upload body's source)
    measures: EpisodeMeasures
    latents: np.ndarray  # float32 [<= latent_sample, Z]: V's means of frames spread over the episode
    arrays: dict[str, np.ndarray] | None = None   # another family's upload arrays (its upload_schema's)

    def upload_body(self) -> bytes | None:
        """What the robot uploads for retraining: an npz of the episode's arrays (None: nothing)."""
        if self.arrays is not None:
            return encode_arrays(self.arrays)
        return encode_episode(self.episode) if self.episode is not None else None


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def sample_latents(vae: VAE, obs: np.ndarray, n: int) -> np.ndarray:
    idx = np.unique(np.linspace(0, len(obs) - 1, min(n, len(obs))).round().astype(int))
    return vae.encode(torch.from_numpy(obs[idx])).numpy().astype(np.float32)


def play_and_measure(env: CarRacing, policy: Policy, vae: VAE, seed: int, latent_sample: int) -> MeasuredEpisode:
    """Play one episode; report its reward, collisions (off-track events), per-decision latency and a
    sample of latents."""
    timed = _Timed(policy)
    episode = play_episode(env, timed, seed, keep_frames=True)
    # between decisions the policy only repeats its action: those calls say nothing about latency
    decisions = np.asarray(timed.seconds[::getattr(policy, "action_repeat", 1)]) * 1000.0
    p50, p99 = np.percentile(decisions, [50, 99])
    # M's residual after the zoom-in: the opening frames are the same black-to-track zoom in every
    # episode and M was not trained to predict them well, which would swamp the per-episode mean
    residuals = np.asarray(episode.extras.get("residual", []), float)[ZOOM_FRAMES:]
    residual = float(np.nanmean(residuals)) if np.isfinite(residuals).any() else None
    measures = EpisodeMeasures(seed=seed, reward=float(episode.total_reward),
                               collisions=count_off_track_events(episode.on_track), steps=episode.length,
                               latency_p50_ms=float(p50), latency_p99_ms=float(p99), residual=residual,
                               ended_at=datetime.now(timezone.utc))
    return MeasuredEpisode(episode, measures, sample_latents(vae, episode.obs, latent_sample))


def encode_episode(episode: Episode) -> bytes:
    """The upload body: one compressed .npz holding exactly the dataset shard arrays."""
    if episode.obs.shape[0] != episode.length:
        raise ValueError(f"episode has {episode.obs.shape[0]} frames for {episode.length} steps; keep the frames")
    return encode_arrays({name: getattr(episode, name) for name in SHARD_ARRAYS})


class CarRacingRobot:
    """carracing-vmc's robot in the simulated fleet: one CarRacing simulator and the version's V-M-C
    policy (with its fault, if one is injected)."""
    SCENARIOS = tuple(SCENARIOS)
    SHIFTED_SCENARIO = "night"   # what `dreamops drift-eval` plays as the shifted world by default
    EPISODE_STEPS = 300          # simulator frames per episode in drift-eval, by default
    LATENTS = "vae-mean"         # what the latents are: V's latent means
    FAULTS = FAULTS

    def __init__(self, bundle, setup: RobotSetup):
        self.setup, self.vae = setup, bundle.vae
        self.policy: Policy = with_fault(bundle.policy(), setup.fault) if setup.fault else bundle.policy()
        self.env = CarRacing(max_steps=setup.max_steps, scenario=setup.scenario)

    def play(self, seed: int) -> MeasuredEpisode:
        return play_and_measure(self.env, self.policy, self.vae, seed, self.setup.latent_sample)

    def close(self) -> None:
        self.env.close()

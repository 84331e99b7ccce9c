"""pick-vla: observation encoder + RSSM world model + flow-matching action head + grasp-success head.

Training loss = flow + w_wm * world model + w_grasp * grasp (seed: 1, 0.5, 0.1), plus w_target * an
auxiliary localisation loss: the encoder's attention map is trained (cross-entropy) to peak on the
named object's cell of the image (demonstrations know where it is; the policy never gets it as an
input). Measured without it: the embedding located the target no better than the tray's centre on
an episode's first frame, because in demonstrations the arm's pose gives the target away from the
second frame on, and a policy that learns that shortcut heads nowhere in particular at the start. The action head
is conditioned on the current observation's embedding; the RSSM models how embeddings evolve under
actions (the planner imagines candidate chunks in it) and its KL and decoder terms also shape the
shared encoder. Execution is receding-horizon: generate `horizon` actions, execute `execute`, re-plan.
"""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamops.models.bundle import module_hash
from dreamops.models.encoders import ObservationEncoder, WordTokenizer, spatial_softmax
from dreamops.models.export import RobotGraph, to_torchscript
from dreamops.models.flow_head import FlowMatchingActionHead
from dreamops.models.rssm import RSSM, State

COMPONENTS = ("encoder", "rssm", "head", "grasp_head", "collision_head")   # collision_head: versions with one


@dataclass(frozen=True)
class PickArchitecture:
    vocab: tuple[str, ...]
    """Instruction words the tokenizer knows (from the training data); others map to <unk>."""
    action_dim: int = 4
    proprio_dim: int = 21
    """sim.pick's PROPRIO_DIM; versions trained before the end effector's entries have 15."""
    embed_dim: int = 256
    text_dim: int = 64
    deter: int = 256
    stoch: int = 32
    classes: int = 32
    horizon: int = 16
    execute: int = 4
    flow_steps: int = 10
    head_hidden: int = 512
    max_words: int = 12
    temperature: float = 1.0
    """Scale of the flow's starting noise when this version acts: 1 samples the learned distribution
    of chunks (the demonstrations' action noise included), 0 gives one deterministic chunk per
    observation. Versions saved before it existed sample at 1."""
    collision_head: bool = False
    """A head predicting a collision during the action that led to each world-model state (the
    planners' penalty). Versions saved before it existed have none."""

    def to_dict(self) -> dict:
        return {**asdict(self), "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict) -> "PickArchitecture":
        return cls(**{**d, "vocab": tuple(d["vocab"])})


@dataclass
class LossWeights:
    flow: float = 1.0
    wm: float = 0.5
    grasp: float = 0.1
    target: float = 1.0
    kl_dyn: float = 0.5
    kl_rep: float = 0.1
    free_bits: float = 1.0
    collision: float = 0.1


def world_model_terms(world: nn.Module, embeds: torch.Tensor, batch: dict[str, torch.Tensor], w: LossWeights
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]:
    """The world model's losses on windows of embeddings [B, T, E]: (RSSM, grasp, collision, metrics),
    unweighted. `world` has the modules `rssm`, `grasp_head` and `collision_head` (None without one):
    a PickVLA, or a member of an ensemble trained on a version's frozen embeddings (models.pick_ensemble)."""
    wm, out, metrics = world.rssm.loss(embeds, batch["actions"], batch["success"], w.kl_dyn, w.kl_rep, w.free_bits)
    grasp_logit = world.grasp_head(out["features"]).squeeze(-1)
    grasp = F.binary_cross_entropy_with_logits(grasp_logit, batch["held"].float())
    metrics = {**metrics, "grasp/bce": float(grasp.detach()),
               "grasp/accuracy": float(((grasp_logit > 0) == batch["held"].bool()).float().mean())}
    collision = grasp.new_zeros(())
    if world.collision_head is not None and "collision" in batch:
        # like the success head: the state each action led to, so a collision is read where it happened
        collision_logit = world.collision_head(out["led_to"]).squeeze(-1)
        collision = F.binary_cross_entropy_with_logits(collision_logit, batch["collision"].float())
        metrics.update({"collision/bce": float(collision.detach()),
                        "collision/predicted": float(torch.sigmoid(collision_logit).mean().detach()),
                        "collision/observed": float(batch["collision"].float().mean())})
    return wm, grasp, collision, metrics


class PickVLA(nn.Module):
    def __init__(self, arch: PickArchitecture):
        super().__init__()
        if not 1 <= arch.execute <= arch.horizon:
            raise ValueError(f"execute must be in [1, horizon={arch.horizon}], got {arch.execute}")
        self.arch = arch
        self.tokenizer = WordTokenizer(arch.vocab, arch.max_words)
        self.encoder = ObservationEncoder(len(self.tokenizer.vocab), arch.proprio_dim, arch.embed_dim, arch.text_dim)
        self.rssm = RSSM(arch.embed_dim, arch.action_dim, arch.deter, arch.stoch, arch.classes)
        self.head = FlowMatchingActionHead(arch.embed_dim, arch.action_dim, arch.horizon, arch.head_hidden,
                                           steps=arch.flow_steps)
        self.grasp_head = nn.Sequential(nn.Linear(self.rssm.feature_dim, 256), nn.SiLU(), nn.Linear(256, 1))
        # built last: the other modules' initial weights stay those of a model without it
        self.collision_head = (nn.Sequential(nn.Linear(self.rssm.feature_dim, 256), nn.SiLU(), nn.Linear(256, 1))
                               if arch.collision_head else None)

    # ---- training ------------------------------------------------------------------------------
    def embed_sequence(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch rgb [B,T,64,64,3], depth [B,T,64,64,1], proprio [B,T,P], tokens [B,L] -> [B,T,E]."""
        b, t = batch["proprio"].shape[:2]
        tokens = batch["tokens"].repeat_interleave(t, dim=0)
        e = self.encoder(batch["rgb"].flatten(0, 1), batch["depth"].flatten(0, 1), batch["proprio"].flatten(0, 1),
                         tokens)
        return e.view(b, t, -1)

    def forward(self, batch: dict[str, torch.Tensor], weights: LossWeights | None = None,
                frames: dict[str, torch.Tensor] | None = None, noise: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: windows for the world model and the grasp head - the inputs of embed_sequence plus
        actions [B,T,A], success [B,T] and held [B,T] (labels of the state at t).
        frames: single frames for the policy losses - rgb, depth, proprio [N,...], tokens [N,L],
        chunks [N,H,A] (the demonstrated next H actions) and optionally target_uv [N,2] (the named
        object's image position, [-1, 1]) for the localisation loss. Sampling frames uniformly, apart from windows, trains the first steps
        of an episode as often as the rest (windows cover the ends of an episode less often).
        Without frames, the windows' frames (and their chunks / target_uv [B,T,...]) are used
        (encoded a second time: simple, and only the held-out report takes this path)."""
        w = weights or LossWeights()
        wm, grasp, collision, world_metrics = world_model_terms(self, self.embed_sequence(batch), batch, w)
        if frames is None:
            frames = {k: v.flatten(0, 1) for k, v in batch.items() if k != "tokens"}
            frames["tokens"] = batch["tokens"].repeat_interleave(batch["proprio"].shape[1], dim=0)
        cond, attention = self.encoder(frames["rgb"], frames["depth"], frames["proprio"], frames["tokens"],
                                    return_visual=True)
        flow, flow_metrics = self.head(frames["chunks"], cond, noise, t)
        loss = w.flow * flow + w.wm * wm + w.grasp * grasp + w.collision * collision
        target_metrics = {}
        if "target_uv" in frames:
            target = F.cross_entropy(attention, self.encoder.attention_cell(frames["target_uv"]))
            loss = loss + w.target * target
            g = self.encoder.attention_grid
            where = spatial_softmax(attention.detach().view(-1, 1, g, g))
            pixels = self.encoder.image_size / 2   # [-1, 1] spans the image
            target_metrics = {"target/ce": float(target.detach()),
                              "target/error_px": float((where - frames["target_uv"]).norm(dim=-1).mean() * pixels)}
        metrics = {**flow_metrics, **world_metrics, **target_metrics, "train/loss": float(loss.detach())}
        return loss, metrics

    # ---- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, rgb: np.ndarray, depth: np.ndarray, proprio: np.ndarray, instructions: list[str]) -> torch.Tensor:
        """One frame per instruction (numpy, batched) -> [B, E]."""
        return self.encoder(torch.as_tensor(rgb), torch.as_tensor(depth), torch.as_tensor(proprio),
                            self.tokenizer.encode(instructions))

    @torch.no_grad()
    def embed_and_scene(self, rgb: np.ndarray, depth: np.ndarray, proprio: np.ndarray, instructions: list[str]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame per instruction (numpy, batched) -> (embeddings [B, E], scene features [B, S]):
        ObservationEncoder.embed_and_scene, the drift checks' latents beside what the heads read."""
        return self.encoder.embed_and_scene(torch.as_tensor(rgb), torch.as_tensor(depth), torch.as_tensor(proprio),
                                            self.tokenizer.encode(instructions))

    @torch.no_grad()
    def generate(self, rgb: np.ndarray, depth: np.ndarray, proprio: np.ndarray, instructions: list[str],
                 generator: torch.Generator | None = None) -> np.ndarray:
        """Batched observations -> action chunks float32 [B, horizon, action_dim] in [-1, 1], at the
        version's temperature."""
        return self.sample_chunks(self.embed(rgb, depth, proprio, instructions), generator).numpy()

    def sample_chunks(self, cond: torch.Tensor, generator: torch.Generator | None = None,
                      temperature: float | None = None) -> torch.Tensor:
        """Embeddings [B, E] -> chunks [B, horizon, action_dim]: the flow from N(0, I) noise scaled by
        `temperature` (the version's when None). At 1 the draws are the head's own sampling's."""
        t = self.arch.temperature if temperature is None else temperature
        noise = torch.randn(cond.shape[0], self.arch.horizon, self.arch.action_dim, generator=generator) * t
        return self.head.sample(cond, noise)

    @torch.no_grad()
    def success_probability(self, embeds: torch.Tensor, actions: torch.Tensor) -> float:
        """One episode as the robot saw it - embeddings of its T+1 observations [T+1, E] (the last one
        after the last action) and its T actions [T, A] - -> the success head's probability that the
        last action completed the task, read on the filtered state after it (RSSM.loss trains the
        head on the states actions led to). The fleet reports it; drift compares it with the
        observed success (calibration)."""
        if len(embeds) != len(actions) + 1:
            raise ValueError(f"{len(embeds)} observations for {len(actions)} actions: one more observation is needed")
        padded = torch.cat([actions, actions.new_zeros(1, actions.shape[1])])  # the last observation's action is unused
        last = self.rssm.observe(embeds[None], padded[None], sample=False)["last"]
        return float(torch.sigmoid(self.rssm.success_head(self.rssm.feature(last))).squeeze())

    def component_hashes(self) -> dict[str, str]:
        return {name: module_hash(getattr(self, name)) for name in COMPONENTS if getattr(self, name) is not None}

    # ---- files ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"family": "pick-vla", "arch": self.arch.to_dict(), "weights": self.state_dict()}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state(), path)
        return path

    @classmethod
    def load(cls, path: Path | str | io.BytesIO) -> "PickVLA":
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("family") != "pick-vla":
            raise ValueError(f"{path} is not a pick-vla bundle (family {state.get('family')!r})")
        model = cls(PickArchitecture.from_dict(state["arch"]))
        model.load_state_dict(state["weights"])
        return model.eval()


class ChunkGenerator(nn.Module):
    """The on-robot inference graph (TorchScript-traceable): observation + tokens + noise -> chunk."""

    def __init__(self, model: PickVLA):
        super().__init__()
        self.encoder, self.head, self.temperature = model.encoder, model.head, float(model.arch.temperature)

    def forward(self, rgb, depth, proprio, tokens, noise):
        """noise: N(0, I) draws; the version's temperature scales them here, as in PickVLA.generate."""
        cond = self.encoder(rgb, depth, proprio, tokens)
        x, steps = noise * self.temperature, self.head.steps
        for i in range(steps):
            t = torch.full((x.shape[0],), i / steps, dtype=x.dtype)
            x = x + self.head.velocity(x, t, cond) / steps
        return x.clamp(-1.0, 1.0)


def chunk_graph(model: PickVLA) -> RobotGraph:
    """(rgb uint8, depth, proprio, instruction token ids, noise) -> action chunk [B, horizon, action_dim]."""
    n, arch, vocab = model.encoder.image_size, model.arch, len(model.tokenizer.vocab)

    def sample(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randint(0, 256, (batch, n, n, 3), dtype=torch.uint8, generator=g),
                0.6 + 0.6 * torch.rand(batch, n, n, 1, generator=g), torch.randn(batch, arch.proprio_dim, generator=g),
                torch.randint(0, vocab, (batch, model.tokenizer.max_len), generator=g),
                torch.randn(batch, arch.horizon, arch.action_dim, generator=g))
    return RobotGraph("pick_vla_chunk", ChunkGenerator(model).eval(), ("rgb", "depth", "proprio", "tokens", "noise"),
                      ("chunk",), sample)


def export_torchscript(model: PickVLA, path: Path) -> Path:
    return to_torchscript(chunk_graph(model), path)


@dataclass
class PickVLAPolicy:
    """Receding-horizon execution: when the queue of planned actions is empty, generate a chunk of
    `horizon` actions (optionally choosing among candidates with a planner) and queue the first
    `execute`. Chunk latencies (ms) are recorded.

    With `ensemble` (ACT's temporal ensembling, Zhao et al. 2023) a chunk is generated at every
    step and the executed action is the weighted mean of what every chunk still covering this step
    planned for it, weight exp(-ensemble * age) for a chunk planned `age` steps ago (0: uniform, as
    ACT's m = 0.01 nearly is; larger trusts the latest observation more); the gripper closes when
    the weighted mean of its +-1 commands is positive.

    `temperature` scales the flow's starting noise (the version's own, arch.temperature, when
    None): 1 samples the learned distribution of chunks (the demonstrations' own action noise
    included), 0 integrates from the noise's mean (one deterministic chunk per observation)."""
    model: PickVLA
    execute: int | None = None
    planner: object | None = None   # one of models.planners.PLANNERS
    seed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ensemble: float | None = None
    temperature: float | None = None
    dream: object | None = None
    """A models.planners.DreamScores (or any callable(model, cond, chunk)): called with each
    executed chunk outside the timed decision, to record what the dream promised for the chunks
    that were executed, whoever chose them. Injected so that this module needs no planner."""

    def __post_init__(self):
        self.execute = self.execute or self.model.arch.execute
        if not 1 <= self.execute <= self.model.arch.horizon:
            raise ValueError(f"execute must be in [1, horizon={self.model.arch.horizon}], got {self.execute}")
        if self.ensemble is not None and self.ensemble < 0:
            raise ValueError(f"ensemble (the decay of older chunks' weight) must be >= 0, got {self.ensemble}")
        if self.temperature is None:
            self.temperature = self.model.arch.temperature
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        self.reset("", self.seed)

    def reset(self, instruction: str, seed: int | None = None) -> None:
        self.instruction = instruction
        self.queue: list[np.ndarray] = []
        self.chunks: list[np.ndarray] = []   # with `ensemble`: the chunks still covering a coming step, newest last
        self.generator = torch.Generator().manual_seed(self.seed if seed is None else seed)

    @torch.no_grad()
    def act(self, obs: dict) -> np.ndarray:
        if self.ensemble is not None:
            return self._ensembled(obs)
        if not self.queue:
            self.queue = list(self._timed_plan(obs)[: self.execute])
        return self.queue.pop(0).astype(np.float32)

    def _timed_plan(self, obs: dict) -> np.ndarray:
        t0 = time.perf_counter()
        chunk = self.plan(obs)
        self.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
        if self.dream is not None:
            self.dream(self.model, self._cond, chunk)
        return chunk

    def _ensembled(self, obs: dict) -> np.ndarray:
        self.chunks.append(self._timed_plan(obs))
        horizon = self.model.arch.horizon
        self.chunks = self.chunks[-horizon:]
        n = len(self.chunks)
        # the chunk planned `age` steps ago reaches this step at its index `age`
        planned = np.stack([c[n - 1 - i] for i, c in enumerate(self.chunks)])
        weights = np.exp(-self.ensemble * np.arange(n - 1, -1, -1, dtype=np.float64))
        action = (weights[:, None] * planned).sum(0) / weights.sum()
        action[3] = 1.0 if action[3] > 0 else -1.0
        return action.astype(np.float32)

    def plan(self, obs: dict) -> np.ndarray:
        cond = self.model.embed(obs["rgb"][None], obs["depth"][None], obs["proprio"][None], [self.instruction])
        self._cond = cond
        if self.planner is not None:
            return self.planner.plan(self.model, cond, self.generator, self.temperature)
        return self.model.sample_chunks(cond, self.generator, self.temperature)[0].numpy()


def initial_state(model: PickVLA, cond: torch.Tensor, copies: int | None = None) -> State:
    """The RSSM's posterior state for one embedding, as at the start of a training window; with
    `copies`, that state of one embedding [1, E] repeated for as many candidates (`model`: anything
    with an `rssm`, a PickVLA or an ensemble member)."""
    rssm = model.rssm
    predicted, _ = rssm.img_step(rssm.initial(cond.shape[0]), torch.zeros(cond.shape[0], rssm.action_dim), False)
    state, _ = rssm.posterior(predicted.h, cond, sample=False)
    return state if copies is None else State(state.h.expand(copies, -1), state.z.expand(copies, -1))

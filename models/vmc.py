"""V, M and C together: the on-robot step (frame -> action) and its exportable graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dreamops.models.controller import Controller, squash_actions
from dreamops.models.export import RobotGraph, to_torchscript
from dreamops.models.mdnrnn import MDNRNN
from dreamops.models.vae import VAE, for_cpu_inference


class VMCStep(nn.Module):
    """One full step: uint8 frame [1, 64, 64, 3], memory (h, c) [1, H] -> action [1, 3], (h', c')."""

    def __init__(self, vae: VAE, mdnrnn: MDNRNN, controller: Controller):
        super().__init__()
        self.vae, self.mdnrnn, self.controller = vae, mdnrnn, controller

    def forward(self, frame: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        z, _ = self.vae.encode_params(frame.permute(0, 3, 1, 2).float() / 255.0)
        action = self.controller(z, h)
        h, c = self.mdnrnn.step(z, action, (h, c))
        return action, h, c


def step_graph(step: VMCStep) -> RobotGraph:
    """The step as a robot runs it: (frame, h, c) -> (action, h', c'); the robot carries h and c."""
    hidden = step.mdnrnn.hidden_dim

    def sample(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8, generator=g),
                torch.rand(batch, hidden, generator=g) * 2 - 1, torch.randn(batch, hidden, generator=g))
    return RobotGraph("vmc_step", step.eval(), ("frame", "h", "c"), ("action", "h_next", "c_next"), sample,
                      carry={"h_next": "h", "c_next": "c"})


def export_torchscript(step: VMCStep, path: Path) -> Path:
    """Trace the step (no data-dependent control flow) and save it for on-robot inference."""
    return to_torchscript(step_graph(step), path)


class VMCPolicy:
    """Drives an environment frame by frame; keeps M's memory between calls.

    `act` is called once per simulator frame; the policy decides every `action_repeat` frames (the
    frame skip M was trained with) and repeats its action in between.
    diagnostics() reports, per frame, M's prediction error for the frame just seen (the drift
    residual; NaN between decisions) and the reward M expects for the coming block of frames.
    """

    name = "vmc"

    def __init__(self, vae: VAE, mdnrnn: MDNRNN, controller: Controller, action_repeat: int = 1):
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        # V reads each frame through a channels_last copy (the same bits, faster at batch 1)
        self.vae, self.mdnrnn, self.controller = for_cpu_inference(vae), mdnrnn.eval(), controller.eval()
        self.action_repeat = action_repeat
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.state = self.mdnrnn.initial_state(1)
        self.predicted_z: torch.Tensor | None = None
        self.frame_index = 0
        self.action = np.zeros(3, np.float32)
        self._diag = {"residual": float("nan"), "predicted_reward": 0.0}

    @torch.no_grad()
    def act(self, frame: np.ndarray) -> np.ndarray:
        decide = self.frame_index % self.action_repeat == 0
        self.frame_index += 1
        if not decide:
            self._diag = {"residual": float("nan"), "predicted_reward": 0.0}
            return self.action.copy()
        z = self.vae.encode(torch.tensor(frame, dtype=torch.uint8).unsqueeze(0))
        residual = float("nan") if self.predicted_z is None else float((self.predicted_z - z).norm())
        action = self.decide(z)
        self.state = self.mdnrnn.step(z, action, self.state)
        logit_pi, mu, _, reward, _ = self.mdnrnn.heads(self.state[0])
        self.predicted_z = (torch.softmax(logit_pi, -1) * mu).sum(-1)
        self._diag = {"residual": residual, "predicted_reward": float(reward)}
        self.action = action.squeeze(0).numpy().astype(np.float32)
        return self.action.copy()

    def decide(self, z: torch.Tensor) -> torch.Tensor:
        """The action [1, 3] for latent z [1, Z] at the current memory: the controller's."""
        return self.controller(z, self.state[0])

    def diagnostics(self) -> dict[str, float]:
        return self._diag


class VMCPlannerPolicy(VMCPolicy):
    """The same V, M and memory, with each decision planned in M's latent space (models.latent_mpc)
    from the controller's own plan; the first action of the chosen plan is executed."""

    name = "vmc-mpc"

    def __init__(self, vae: VAE, mdnrnn: MDNRNN, controller: Controller, planner, action_repeat: int = 1):
        self.planner = planner
        super().__init__(vae, mdnrnn, controller, action_repeat)

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self.plan: torch.Tensor | None = None
        self.planner.reseed(seed)

    def decide(self, z: torch.Tensor) -> torch.Tensor:
        self.plan = self.planner.plan(self.mdnrnn, self.controller, z, self.state, self.plan)
        return squash_actions(self.plan[:1])

"""Save and load V, M, C together as one file (architecture + state dicts)."""
from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dreamops.models.controller import Controller
from dreamops.models.mdnrnn import MDNRNN
from dreamops.models.vae import VAE
from dreamops.models.vmc import VMCPlannerPolicy, VMCPolicy


def module_hash(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names and bytes, in key order)."""
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Architecture:
    latent_dim: int = 32
    hidden_dim: int = 256
    n_gaussians: int = 5
    action_dim: int = 3
    action_repeat: int = 1  # simulator frames per decision; the policy repeats its action itself


@dataclass
class VMCBundle:
    arch: Architecture
    vae: VAE
    mdnrnn: MDNRNN
    controller: Controller

    @classmethod
    def create(cls, arch: Architecture) -> "VMCBundle":
        return cls(arch, VAE(arch.latent_dim),
                   MDNRNN(arch.latent_dim, arch.action_dim, arch.hidden_dim, arch.n_gaussians),
                   Controller(arch.latent_dim, arch.hidden_dim, arch.action_dim))

    def state(self) -> dict:
        return {"arch": asdict(self.arch), "vae": self.vae.state_dict(), "mdnrnn": self.mdnrnn.state_dict(),
                "controller": self.controller.state_dict()}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state(), path)
        return path

    @classmethod
    def load(cls, path: Path | str | io.BytesIO) -> "VMCBundle":
        state = torch.load(path, map_location="cpu", weights_only=True)
        bundle = cls.create(Architecture(**state["arch"]))
        bundle.vae.load_state_dict(state["vae"])
        bundle.mdnrnn.load_state_dict(state["mdnrnn"])
        bundle.controller.load_state_dict(state["controller"])
        for m in (bundle.vae, bundle.mdnrnn, bundle.controller):
            m.eval()
        return bundle

    def component_hashes(self) -> dict[str, str]:
        """sha256 of each component's weights, for lineage."""
        return {"vae": module_hash(self.vae), "mdnrnn": module_hash(self.mdnrnn),
                "controller": module_hash(self.controller)}

    def policy(self) -> VMCPolicy:
        return VMCPolicy(self.vae, self.mdnrnn, self.controller, self.arch.action_repeat)


class BundlePolicyFactory:
    """Picklable: builds a VMCPolicy inside a worker process. It carries the bundle's bytes, not its
    path, so a worker on another machine (a Ray node) needs no access to this one's files."""

    def __init__(self, path: str | Path, planner=None):
        self.path = str(path)
        self.data = Path(path).read_bytes()
        self.planner = planner   # a models.latent_mpc.LatentMPC: each decision planned in M (picklable)

    def bundle(self) -> VMCBundle:
        return VMCBundle.load(io.BytesIO(self.data))

    def __call__(self) -> VMCPolicy:
        torch.set_num_threads(1)
        b = self.bundle()
        if self.planner is None:
            return b.policy()
        return VMCPlannerPolicy(b.vae, b.mdnrnn, b.controller, self.planner, b.arch.action_repeat)

"""An ensemble of pick-vla world models: K members, each an RSSM with the version's grasp, success and
collision heads, trained on the version's frozen embeddings (tasks.pick_ensemble).

The members share the version's encoder, so they read the same embeddings and predict into the same
embedding space; their categorical latents are their own (a member's class 3 is not another's), so
disagreement is measured where they share a space: the embedding each predicts for the next
observation (Plan2Explore's signal, Sekar et al. 2020). The planners score a chunk in every member
(models.planners, `members`): the CVaR over members and futures, minus a weight times the members'
spread, so a chunk that only one world model believes in loses.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from dreamops.models.pick_vla import PickArchitecture, initial_state
from dreamops.models.rssm import RSSM


class WorldModelMember(nn.Module):
    """The world-model half of a PickVLA: the modules the planners read (`rssm`, `grasp_head`,
    `collision_head`), built in the same order and shapes as the version's."""

    def __init__(self, arch: PickArchitecture):
        super().__init__()
        self.arch = arch
        self.rssm = RSSM(arch.embed_dim, arch.action_dim, arch.deter, arch.stoch, arch.classes)
        self.grasp_head = nn.Sequential(nn.Linear(self.rssm.feature_dim, 256), nn.SiLU(), nn.Linear(256, 1))
        self.collision_head = (nn.Sequential(nn.Linear(self.rssm.feature_dim, 256), nn.SiLU(), nn.Linear(256, 1))
                               if arch.collision_head else None)


def save_members(members: list[WorldModelMember], path: Path | io.BytesIO) -> None:
    if not members:
        raise ValueError("an ensemble needs at least one member")
    torch.save({"family": "pick-vla-ensemble", "arch": members[0].arch.to_dict(),
                "members": [m.state_dict() for m in members]}, path)


def load_members(path: Path | str | io.BytesIO) -> list[WorldModelMember]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("family") != "pick-vla-ensemble":
        raise ValueError(f"{path} is not a pick-vla ensemble (family {state.get('family')!r})")
    arch = PickArchitecture.from_dict(state["arch"])
    members = []
    for weights in state["members"]:
        member = WorldModelMember(arch)
        member.load_state_dict(weights)
        members.append(member.eval())
    return members


@torch.no_grad()
def predicted_embeddings(member: WorldModelMember, cond: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
    """The embeddings a member predicts along each chunk from the observation's state: cond [1, E],
    chunks [K, H, A] -> [K, H, E] (the prior's mode, decoded)."""
    return member.rssm.decoder(member.rssm.imagine(initial_state(member, cond, chunks.shape[0]), chunks))


@torch.no_grad()
def disagreement(members: list[WorldModelMember], cond: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
    """Per imagined step, the variance across members of the predicted embedding, averaged over its
    dimensions: cond [1, E], chunks [K, H, A] -> [K, H]. Low where the data was; high off it."""
    if len(members) < 2:
        raise ValueError("disagreement needs at least two members")
    return torch.stack([predicted_embeddings(m, cond, chunks) for m in members]).var(dim=0).mean(-1)

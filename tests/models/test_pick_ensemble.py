"""pick-vla's ensemble of world models: members trained on bootstrap resamples agree where the data
was and disagree off it; the planners' ensemble score is the CVaR over members x futures minus the
members' spread; members travel to the evaluation workers with the policy."""
import io

import numpy as np
import pytest
import torch

from dreamops.models.pick_ensemble import WorldModelMember, disagreement, load_members, save_members
from dreamops.models.pick_vla import PickVLA
from dreamops.models.planners import PLANNERS, draw_futures, imagined_score
from dreamops.tasks.evaluate_pick import PickPolicyFactory
from dreamops.tasks.pick_config import PickTrainConfig
from dreamops.tasks.pick_ensemble import train_member
from dreamops.tasks.train_pick import Demos
from tests.models.test_pick_collision_head import ARCH, _cond


def _members(n: int) -> list[WorldModelMember]:
    out = []
    for j in range(n):
        torch.manual_seed(10 + j)
        member = WorldModelMember(ARCH).eval()
        torch.nn.init.normal_(member.grasp_head[-1].weight, std=0.5)   # scores that differ between members
        out.append(member)
    return out


def _model_cond_chunks():
    torch.manual_seed(0)
    model = PickVLA(ARCH).eval()
    chunks = torch.rand(6, ARCH.horizon, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return model, _cond(model), chunks


def test_one_member_scores_as_the_version_and_several_by_cvar_minus_their_spread():
    model, cond, chunks = _model_cond_chunks()
    own = imagined_score(model, cond, chunks, 4.0, 4.0)
    assert torch.equal(imagined_score(model, cond, chunks, 4.0, 4.0, members=[model]), own)
    members = _members(3)
    each = torch.stack([imagined_score(m, cond, chunks, 4.0, 4.0) for m in members])   # [3, K]
    assert each.std(dim=0).min() > 1e-3   # the members differ
    mean = imagined_score(model, cond, chunks, 4.0, 4.0, members=members)
    assert torch.allclose(mean, each.mean(0), atol=1e-6)
    worst = imagined_score(model, cond, chunks, 4.0, 4.0, alpha=1 / 3, members=members)   # 1 of 3: the worst member
    assert torch.allclose(worst, each.min(0).values, atol=1e-6)
    penalised = imagined_score(model, cond, chunks, 4.0, 4.0, members=members, disagreement_weight=2.0)
    assert torch.allclose(mean - penalised, 2.0 * each.std(dim=0, unbiased=False), atol=1e-6)
    # with futures: every member meets the same futures, the CVaR over all members x futures
    futures = draw_futures(model, 4, torch.Generator().manual_seed(3))
    per = torch.stack([torch.stack([imagined_score(m, cond, chunks, 4.0, 4.0, futures[:, f:f + 1])
                                    for f in range(4)], 1) for m in members])      # [3, K, 4]
    worst_three = per.permute(1, 0, 2).reshape(6, -1).sort(dim=1).values[:, :3].mean(1)   # ceil(0.25 * 12) = 3
    assert torch.allclose(imagined_score(model, cond, chunks, 4.0, 4.0, futures, 0.25, members), worst_three, atol=1e-6)


def _linear_world(episodes: int, steps: int, seed: int) -> tuple[Demos, list[torch.Tensor]]:
    """Embeddings that start near one point and move by a fixed linear map of small actions (each
    in [-0.2, 0.2]): e_{t+1} = e_t + 0.5 * W a_t."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, ARCH.embed_dim)).astype(np.float32)
    embeds, actions = [], []
    for _ in range(episodes):
        a = rng.uniform(-0.2, 0.2, size=(steps, 4)).astype(np.float32)
        e = [rng.normal(scale=0.05, size=ARCH.embed_dim).astype(np.float32)]
        for t in range(steps - 1):
            e.append(e[-1] + 0.5 * a[t] @ w)
        embeds.append(torch.from_numpy(np.stack(e)))
        actions.append(torch.from_numpy(a))
    zeros = [torch.zeros(steps) for _ in range(episodes)]
    demos = Demos(rgb=[], depth=[], proprio=[], actions=actions, chunks=[], success=zeros, held=zeros,
                  collision=zeros, target_uv=[], instructions=[], labelled=[])
    return demos, embeds


def test_members_agree_on_the_data_and_disagree_off_it():
    """Three members on bootstrap resamples; off the data = chunks of full actions (+-1 on every
    axis, five times the data's range). Measured: 0.011 on the data, 0.036 / 0.064 off it."""
    demos, embeds = _linear_world(episodes=24, steps=12, seed=0)
    cfg = PickTrainConfig(batch_size=16, seq_len=8, lr=3e-3, log_every=100)
    rng = np.random.default_rng(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a model this small trains faster on one thread (22 s for the three)
    try:
        members = [train_member(ARCH, embeds, demos, list(rng.integers(24, size=24)), cfg, steps=600, seed=j,
                                show_progress=False) for j in range(3)]
    finally:
        torch.set_num_threads(threads)

    def mean_disagreement(chunk_of):
        return float(torch.stack([disagreement(members, embeds[e][:1], chunk_of(e)).mean() for e in range(8)]).mean())
    on_data = mean_disagreement(lambda e: demos.actions[e][None, :ARCH.horizon])
    for sign in (1.0, -1.0):
        off = mean_disagreement(lambda e: torch.full((1, ARCH.horizon, 4), sign))
        assert off > 2 * on_data, (on_data, off)
    with pytest.raises(ValueError):
        disagreement(members[:1], embeds[0][:1], demos.actions[0][None, :ARCH.horizon])


def test_members_travel_to_the_workers_and_the_planner_scores_in_them():
    model, cond, _ = _model_cond_chunks()
    members = _members(2)
    buf = io.BytesIO()
    save_members(members, buf)
    loaded = load_members(io.BytesIO(buf.getvalue()))
    assert all(torch.equal(a, b) for m, n in zip(members, loaded)
               for a, b in zip(m.state_dict().values(), n.state_dict().values()))
    factory = PickPolicyFactory.from_model(model, {"kind": "cem", "samples": 8, "disagreement_weight": 1.0}, {},
                                           members)
    policy = factory()
    assert len(policy.planner.members) == 2 and policy.planner.disagreement_weight == 1.0
    chunk = policy.planner.plan(policy.model, cond, torch.Generator().manual_seed(5))
    assert chunk.shape == (ARCH.horizon, 4)
    with pytest.raises(ValueError, match="planner"):
        PickPolicyFactory.from_model(model, None, {}, members)
    with pytest.raises(ValueError):
        PLANNERS["mppi"](disagreement_weight=-1.0)
    with pytest.raises(ValueError, match="not a pick-vla ensemble"):
        buf = io.BytesIO()
        torch.save({"family": "carracing-vmc"}, buf)
        load_members(io.BytesIO(buf.getvalue()))

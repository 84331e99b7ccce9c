"""pick-vla's collision head: it learns from the data's per-step collisions, and the planners subtract
the imagined chance of a collision anywhere in a chunk; versions without one plan as before."""
import dataclasses

import numpy as np
import torch

from dreamops.models.pick_vla import PickArchitecture, PickVLA
from dreamops.models.planners import imagined_score

ARCH = PickArchitecture(vocab=("pick", "up", "the", "red", "box"), embed_dim=32, text_dim=16, deter=32, stoch=4,
                        classes=4, head_hidden=32, horizon=4, execute=2, collision_head=True)
NO_HEAD = dataclasses.replace(ARCH, collision_head=False)


def _cond(model):
    rng = np.random.default_rng(0)
    return model.embed(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), np.full((1, 64, 64, 1), 0.8, np.float32),
                       rng.normal(size=(1, 21)).astype(np.float32), ["pick up the red box"])


def test_the_collision_head_leaves_the_other_modules_initial_weights_alone():
    torch.manual_seed(0)
    with_head = PickVLA(ARCH).state_dict()
    torch.manual_seed(0)
    without = PickVLA(NO_HEAD).state_dict()
    assert set(with_head) - set(without) and all(k.startswith("collision_head.") for k in set(with_head) - set(without))
    assert all(torch.equal(with_head[k], v) for k, v in without.items())


def test_the_penalty_is_the_chance_of_a_collision_in_any_step_of_the_chunk():
    torch.manual_seed(0)
    model = PickVLA(ARCH).eval()
    last = model.collision_head[-1]
    with torch.no_grad():   # every imagined step collides with probability sigmoid(-1)
        last.weight.zero_()
        last.bias.fill_(-1.0)
    cond, chunks = _cond(model), torch.rand(5, ARCH.horizon, 4) * 2 - 1
    p = 1.0 / (1.0 + np.exp(1.0))
    free = imagined_score(model, cond, chunks, 4.0, collision_weight=0.0)
    penalised = imagined_score(model, cond, chunks, 4.0, collision_weight=3.0)
    assert torch.allclose(free - penalised, torch.full((5,), 3.0 * (1 - (1 - p) ** ARCH.horizon)), atol=1e-5)
    old = PickVLA(NO_HEAD).eval()   # a version without the head: the weight changes nothing
    cond = _cond(old)
    assert torch.equal(imagined_score(old, cond, chunks, 4.0, 3.0), imagined_score(old, cond, chunks, 4.0, 0.0))


def test_the_head_learns_which_actions_collide():
    """Windows whose action pushes down (dz < -0.5) collide on that step: forty steps on the
    collision loss alone separate them on states the model imagines."""
    torch.manual_seed(0)
    model = PickVLA(ARCH)
    g = torch.Generator().manual_seed(1)
    b, t = 8, 2
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    from dreamops.models.pick_vla import LossWeights
    weights = LossWeights(flow=0.0, wm=0.0, grasp=0.0, target=0.0, collision=1.0)
    for _ in range(40):
        actions = torch.rand(b, t, 4, generator=g) * 2 - 1
        batch = {"rgb": torch.randint(0, 255, (b, t, 64, 64, 3), dtype=torch.uint8, generator=g),
                 "depth": torch.full((b, t, 64, 64, 1), 0.8), "proprio": torch.zeros(b, t, 21),
                 "tokens": model.tokenizer.encode(["pick up the red box"] * b), "actions": actions,
                 "chunks": torch.zeros(b, t, ARCH.horizon, 4), "success": torch.zeros(b, t), "held": torch.zeros(b, t),
                 "collision": (actions[..., 2] < -0.5).float()}
        loss, metrics = model(batch, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metrics["collision/bce"] < 0.2
    model.eval()
    down, up = torch.zeros(1, ARCH.horizon, 4), torch.zeros(1, ARCH.horizon, 4)
    down[0, 0, 2], up[0, 0, 2] = -1.0, 1.0
    cond = _cond(model)
    assert float(imagined_score(model, cond, down, 0.0, 1.0)) < float(imagined_score(model, cond, up, 0.0, 1.0)) - 0.3

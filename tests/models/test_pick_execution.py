"""How PickVLAPolicy executes its chunks: receding horizon, and ACT's temporal ensembling."""
import numpy as np
import pytest

from dreamops.models.pick_vla import PickArchitecture, PickVLA, PickVLAPolicy

ARCH = PickArchitecture(vocab=("pick", "up", "the", "red", "box"), embed_dim=32, text_dim=16, deter=32, stoch=4,
                        classes=4, head_hidden=32, horizon=4, execute=2)


class Scripted(PickVLAPolicy):
    """The execution logic over known chunks: the chunk planned at call k is 10 * k + j at its
    index j (xyz), and closes the gripper from call 2 on."""

    def plan(self, obs):
        k = self.calls = getattr(self, "calls", -1) + 1
        chunk = np.zeros((ARCH.horizon, 4), np.float32)
        chunk[:, :3] = (10 * k + np.arange(ARCH.horizon))[:, None]
        chunk[:, 3] = 1.0 if k >= 2 else -1.0
        return chunk


def test_receding_horizon_replans_every_execute_steps():
    policy = Scripted(PickVLA(ARCH))
    xs = [policy.act({})[0] for _ in range(5)]
    assert xs == [0, 1, 10, 11, 20] and len(policy.latencies_ms) == 3


def test_temporal_ensembling_averages_every_chunk_covering_the_step():
    policy = Scripted(PickVLA(ARCH), ensemble=0.0)
    steps = [policy.act({}) for _ in range(6)]
    # step 2: chunk 0's index 2, chunk 1's index 1, chunk 2's index 0 -> mean(2, 11, 20)
    assert steps[2][0] == pytest.approx(11.0)
    # step 5: only the last 4 chunks (horizon) still cover it: chunks 2..5 at indices 3..0
    assert steps[5][0] == pytest.approx(np.mean([23, 32, 41, 50]))
    # the weighted majority of the +-1 gripper commands; a tie (step 3: two and two) keeps it open
    assert [s[3] for s in steps] == [-1, -1, -1, -1, 1, 1]
    assert len(policy.latencies_ms) == 6                     # a chunk every step


def test_a_steep_decay_executes_the_latest_chunk_and_reset_forgets_older_ones():
    policy = Scripted(PickVLA(ARCH), ensemble=50.0)
    assert [policy.act({})[0] for _ in range(3)] == pytest.approx([0, 10, 20])
    policy.reset("pick up the red box", 0)
    assert policy.act({})[0] == pytest.approx(30)            # no chunk of the last episode is averaged in


@pytest.mark.parametrize("kwargs", [{"execute": 5}, {"ensemble": -1.0}, {"temperature": -0.5}])
def test_bad_execution_is_refused(kwargs):
    with pytest.raises(ValueError):
        PickVLAPolicy(PickVLA(ARCH), **kwargs)


def test_temperature_zero_gives_one_chunk_per_observation_and_one_keeps_the_sampled_draws():
    import torch

    model = PickVLA(ARCH)
    torch.nn.init.normal_(model.head.out.weight, std=0.1)   # a head that is not the identity of its noise
    rng = np.random.default_rng(0)
    obs = {"rgb": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "depth": np.full((64, 64, 1), 0.8, np.float32),
           "proprio": rng.normal(size=21).astype(np.float32)}

    def chunk(temperature, seed):
        policy = PickVLAPolicy(model, temperature=temperature)
        policy.reset("pick up the red box", seed)
        return policy.plan(obs)

    assert np.array_equal(chunk(0.0, 1), chunk(0.0, 2))
    assert not np.array_equal(chunk(1.0, 1), chunk(1.0, 2))
    # temperature 1 is the head's own sampling, draw for draw (versions measured before it existed)
    cond = model.embed(obs["rgb"][None], obs["depth"][None], obs["proprio"][None], ["pick up the red box"])
    assert np.array_equal(chunk(1.0, 3), model.head.sample(cond, generator=torch.Generator().manual_seed(3))[0].numpy())


def test_the_versions_temperature_is_saved_with_it_and_followed_by_generate_the_policy_and_the_graph(tmp_path):
    import dataclasses

    import torch

    from dreamops.models.pick_vla import chunk_graph
    from dreamops.tasks.pick_config import PickModelConfig
    from dreamops.tasks.train_pick import architecture

    arch = architecture(PickModelConfig(embed_dim=32, text_dim=16, deter=32, stoch=4, classes=4, head_hidden=32,
                                        temperature=0.0), ARCH.vocab, 21)
    model = PickVLA(arch)
    torch.nn.init.normal_(model.head.out.weight, std=0.1)
    model = PickVLA.load(model.save(tmp_path / "pick_vla.pt"))
    assert model.arch.temperature == 0.0
    rng = np.random.default_rng(0)
    rgb, depth = rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), np.full((1, 64, 64, 1), 0.8, np.float32)
    proprio = rng.normal(size=(1, 21)).astype(np.float32)
    chunks = [model.generate(rgb, depth, proprio, ["pick up the red box"], torch.Generator().manual_seed(s))
              for s in (1, 2)]
    assert np.array_equal(chunks[0], chunks[1])
    policy = PickVLAPolicy(model)
    policy.reset("pick up the red box", 5)
    assert policy.temperature == 0.0
    assert np.allclose(policy.plan({"rgb": rgb[0], "depth": depth[0], "proprio": proprio[0]}), chunks[0][0], atol=1e-6)
    graph = chunk_graph(model).module
    tokens = model.tokenizer.encode(["pick up the red box"])
    for s in (1, 2):   # the graph's noise input is N(0, I); the version's temperature applies inside
        noise = torch.randn(1, arch.horizon, 4, generator=torch.Generator().manual_seed(s))
        out = graph(torch.as_tensor(rgb), torch.as_tensor(depth), torch.as_tensor(proprio), tokens, noise)
        assert np.allclose(out.detach().numpy(), chunks[0], atol=1e-6)
    # a version saved before the field existed samples at 1
    old = {k: v for k, v in dataclasses.asdict(ARCH).items() if k != "temperature"}
    assert PickArchitecture.from_dict({**old, "vocab": list(ARCH.vocab)}).temperature == 1.0


def test_the_mppi_planner_never_scores_below_the_policys_own_chunk():
    """Started from the policy's chunk, it returns that chunk or one the world model scores higher."""
    import torch

    from dreamops.models.planners import PLANNERS, CEMPlanner, MPPIPlanner

    torch.manual_seed(0)
    model = PickVLA(ARCH).eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.1)
    rng = np.random.default_rng(0)
    cond = model.embed(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), np.full((1, 64, 64, 1), 0.8, np.float32),
                       rng.normal(size=(1, 21)).astype(np.float32), ["pick up the red box"])
    planner = PLANNERS["mppi"](samples=16, iterations=2)
    assert isinstance(planner, MPPIPlanner)
    chunk = planner.plan(model, cond, torch.Generator().manual_seed(3))
    own = model.sample_chunks(cond, torch.Generator().manual_seed(3))
    score = CEMPlanner().score
    assert chunk.shape == (ARCH.horizon, 4) and np.abs(chunk).max() <= 1.0
    assert float(score(model, cond, torch.as_tensor(chunk)[None])[0]) >= float(score(model, cond, own)[0])
    assert np.array_equal(chunk, planner.plan(model, cond, torch.Generator().manual_seed(3)))   # seeded
    with pytest.raises(ValueError):
        MPPIPlanner(std=0.0)


def test_the_dream_score_of_every_executed_chunk_is_recorded_when_asked():
    import torch

    from dreamops.models.planners import DreamScores, imagined_score

    torch.manual_seed(0)
    model = PickVLA(ARCH).eval()
    rng = np.random.default_rng(0)
    obs = {"rgb": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "depth": np.full((64, 64, 1), 0.8, np.float32),
           "proprio": rng.normal(size=21).astype(np.float32)}
    policy = PickVLAPolicy(model, dream=DreamScores(), temperature=0.0)
    policy.reset("pick up the red box", 0)
    chunk = policy.plan(obs)
    policy.queue = []
    policy.act(obs)
    policy.act(obs)                                   # one chunk for two steps (execute=2)
    assert len(policy.dream.scores) == 1 == len(policy.latencies_ms)
    cond = model.embed(obs["rgb"][None], obs["depth"][None], obs["proprio"][None], ["pick up the red box"])
    expected = float(imagined_score(model, cond, torch.as_tensor(chunk)[None], 4.0, 4.0)[0])
    assert policy.dream.scores[0] == pytest.approx(expected, abs=1e-6)   # temperature 0: the same chunk
    quiet = PickVLAPolicy(model)
    quiet.act(obs)
    assert quiet.dream is None

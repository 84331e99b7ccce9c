"""bench/bench_roofline.py: its limits are measured on exactly the stage's work."""
import numpy as np
import torch

from dreamops.models.mdnrnn import lstm_step
from dreamops.sim.carracing import CarRacing
from dreamops.sim.policies import CorrelatedExplorationPolicy
from dreamops.sim.rollout import play_episode
from tests.bench import bench_module

roofline = bench_module("bench_roofline")


def test_the_simulator_alone_replays_the_stage_s_own_frames():
    """The simulator's limit is timed on the stage's episodes replayed: the same seeds and actions
    must give the same trajectory (rewards, frames drawn and ends), or the limit is another workload."""
    env = CarRacing(max_steps=60, action_repeat=4)
    played = {s: play_episode(env, CorrelatedExplorationPolicy(), s) for s in (3, 4)}
    replayed = {s: play_episode(env, roofline.Replay({k: e.actions for k, e in played.items()}), s) for s in played}
    env.close()
    for s in played:
        assert np.array_equal(replayed[s].rewards, played[s].rewards)
        assert np.array_equal(replayed[s].obs, played[s].obs)
        assert replayed[s].env_frames == played[s].env_frames


def test_the_lstm_flops_are_its_matmuls():
    """FlopCounterMode does not see nn.LSTM's fused CPU kernel; the hand count's forward third must
    equal what it counts on the same LSTM unrolled into matmuls."""
    b, t, i, h = 4, 5, 35, 16
    lstm = torch.nn.LSTM(i, h, batch_first=True)
    x = torch.randn(b, t, i)

    def unrolled():
        hs, cs = torch.zeros(b, h), torch.zeros(b, h)
        for k in range(t):
            hs, cs = lstm_step(x[:, k], hs, cs, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    assert roofline.flops_of(unrolled) * 3 == roofline.lstm_train_flops(b, t, i, h)


def test_the_recurrence_alone_is_m_s_own_lstm_at_the_stage_s_shapes():
    """The recurrences' limits time M's own LSTM: the dream's cell steps are nn.LSTM's, step by step."""
    from dreamops.models.mdnrnn import MDNRNN

    torch.manual_seed(0)
    m = MDNRNN(hidden_dim=16, n_gaussians=2)
    x = torch.randn(4, m.lstm.input_size)
    h, c = roofline.dream_cell_steps(m, x, torch.zeros(4, 16), torch.zeros(4, 16), 3)
    with torch.no_grad():
        out, (h_n, c_n) = m.lstm(x[:, None].expand(4, 3, -1))
    torch.testing.assert_close((h, c), (h_n[0], c_n[0]))
    assert roofline.lstm_alone_s(m, 2, 3, repeats=1) > 0 and roofline.lstm_cell_alone_s(m, 4, 3, repeats=1) > 0

import dataclasses

import pytest
import torch

from dreamops.models.mdnrnn import MDNRNN
from dreamops.tasks.config import CMAConfig, resolve_config
from dreamops.tasks.evolve import checkpoint_generations, dream_fitness, evolve_checkpoints, evolve_controller


def _throttle_rewarding_model() -> MDNRNN:
    """A hand-built M whose reward rises with throttle: unit 0's cell input is 3 * throttle - 1.5,
    its input/output gates are open, reward = h_0, z is (nearly) deterministic zero. Half throttle
    earns 0; the best controller floors it."""
    m = MDNRNN()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        hdim = m.hidden_dim
        m.lstm.bias_ih_l0[0] = 10.0  # input gate of unit 0 open
        m.lstm.bias_ih_l0[hdim] = -10.0  # forget gate closed: no accumulation
        m.lstm.weight_ih_l0[2 * hdim, 32 + 1] = 3.0  # cell input <- throttle
        m.lstm.bias_ih_l0[2 * hdim] = -1.5
        m.mdn.bias[2 * 32 * 5:] = -7.0  # log sigma: z stays at mu = 0
        m.lstm.bias_ih_l0[3 * hdim] = 10.0  # output gate open
        m.reward_head.weight[0, 0] = 1.0
        m.done_head.bias.fill_(-20.0)
    return m


def test_cma_es_improves_a_known_objective():
    m = _throttle_rewarding_model()
    starts = {"z0": torch.zeros(4, 32), "h0": torch.zeros(4, 256), "c0": torch.zeros(4, 256)}
    cfg = CMAConfig(population=8, rollouts=2, generations=15, dream_steps=10, temperature=1.0, sigma0=0.5)
    before = dream_fitness(m, torch.zeros(1, 867), starts, 2, 10, 1.0, seed=0).item()
    controller, history = evolve_controller(m, starts, cfg, show_progress=False)
    after = history["final_dream_return"][0]
    best_possible = 10 * torch.tanh(torch.tanh(torch.tensor(1.5))).item()
    assert abs(before) < 0.1
    assert after > before + 0.6 * (best_possible - before)
    assert history["best"][-1] >= history["best"][0]
    # the learned controller floors the throttle from the start state
    action = controller(torch.zeros(1, 32), torch.zeros(1, 256))
    assert action[0, 1] > 0.9


def test_common_random_numbers_give_equal_genomes_equal_fitness():
    torch.manual_seed(0)
    m = MDNRNN()
    starts = {"z0": torch.randn(16, 32), "h0": torch.zeros(16, 256), "c0": torch.zeros(16, 256)}
    g = (torch.randn(1, 867) * 0.2).repeat(4, 1)  # four copies of one controller
    independent = dream_fitness(m, g, starts, rollouts=3, steps=20, temperature=1.0, seed=0)
    shared = dream_fitness(m, g, starts, rollouts=3, steps=20, temperature=1.0, seed=0, dream_dropout=0.1,
                           common_random_numbers=True)
    assert len(set(independent.tolist())) > 1  # independent draws rank copies of one controller apart
    assert len(set(shared.tolist())) == 1


def test_checkpoint_generations_are_evenly_spaced_and_end_at_the_final_mean():
    assert checkpoint_generations(60, 1, warm=False) == [60]
    assert checkpoint_generations(60, 3, warm=False) == [20, 40, 60]
    assert checkpoint_generations(30, 3, warm=True) == [0, 15, 30]  # a warm search keeps its start
    assert checkpoint_generations(2, 5, warm=True) == [0, 1, 2]  # no generation twice


def test_checkpoints_keep_the_start_the_search_and_the_final_mean_of_one_search():
    """The last checkpoint is exactly what evolve_controller returns (one search, not two), the
    first of a warm search is its starting controller, and each has its dream return."""
    m = _throttle_rewarding_model()
    starts = {"z0": torch.zeros(4, 32), "h0": torch.zeros(4, 256), "c0": torch.zeros(4, 256)}
    cfg = CMAConfig(population=8, rollouts=2, generations=6, dream_steps=10, temperature=1.0, sigma0=0.5)
    init, _ = evolve_controller(m, starts, cfg, show_progress=False)
    final, _ = evolve_controller(m, starts, cfg, show_progress=False, init=init)
    controllers, history = evolve_checkpoints(m, starts, dataclasses.replace(cfg, checkpoints=3),
                                              show_progress=False, init=init)
    assert history["checkpoint_generation"] == [0.0, 3.0, 6.0]
    assert len(controllers) == len(history["checkpoint_dream_return"]) == 3
    assert torch.equal(controllers[0].get_flat(), init.get_flat())
    assert torch.equal(controllers[-1].get_flat(), final.get_flat())
    assert not torch.equal(controllers[1].get_flat(), controllers[-1].get_flat())
    assert history["final_dream_return"] == history["checkpoint_dream_return"][-1:]


def test_a_one_round_run_keeps_only_the_final_mean_and_bad_counts_are_named():
    """Nothing would choose among checkpoints in one round (no validation episodes)."""
    assert resolve_config("quick", {"rounds": 1}).for_round(0).cma.checkpoints == 1
    assert [resolve_config("quick").for_round(k).cma.checkpoints for k in (0, 1)] == [3, 3]
    with pytest.raises(ValueError, match="cma.checkpoints must be positive"):
        resolve_config("quick", {"cma.checkpoints": 0})
    assert resolve_config("quick", {"cma.checkpoints": 2}).max_validation_frames() == 2 * 8 * 8 * 1000  # checkpoints x rounds x episodes x frames

import torch

from dreamops.models.mdnrnn import MDNRNN
from dreamops.tasks.config import CMAConfig
from dreamops.tasks.evolve import dream_fitness, evolve_controller


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

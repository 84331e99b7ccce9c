import torch

from dreamops.models.controller import Controller


def test_exactly_867_parameters():
    assert Controller().n_params == 867


def test_actions_are_in_env_ranges():
    c = Controller()
    c.set_flat(torch.randn(867) * 10)
    a = c(torch.randn(100, 32), torch.randn(100, 256))
    assert a.shape == (100, 3)
    assert (a[:, 0].abs() <= 1).all() and (a[:, 1:] >= 0).all() and (a[:, 1:] <= 1).all()


def test_genome_round_trip():
    genome = torch.randn(867, generator=torch.Generator().manual_seed(0))
    c = Controller()
    c.set_flat(genome)
    assert torch.equal(c.get_flat(), genome)
    # the genome layout is weight (row-major) then bias
    assert torch.equal(c.fc.bias.detach(), genome[-3:])
    assert torch.equal(c.fc.weight.detach()[1], genome[288:576])


def test_brake_is_off_for_the_zero_genome_cma_es_starts_from():
    c = Controller()
    c.set_flat(torch.zeros(867))
    a = c(torch.randn(1, 32), torch.randn(1, 256))
    assert torch.equal(a, torch.tensor([[0.0, 0.5, 0.0]]))


def test_wrong_genome_size_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="867"):
        Controller().set_flat(torch.zeros(10))

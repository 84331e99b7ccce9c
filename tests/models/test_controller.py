import torch

from dreamops.models.controller import Controller, batched_controller_actions


def test_exactly_867_parameters():
    assert Controller().n_params == 867


def test_actions_are_in_env_ranges():
    c = Controller()
    c.set_flat(torch.randn(867) * 10)
    a = c(torch.randn(100, 32), torch.randn(100, 256))
    assert a.shape == (100, 3)
    assert (a[:, 0].abs() <= 1).all() and (a[:, 1:] >= 0).all() and (a[:, 1:] <= 1).all()


def test_genome_round_trip_and_batched_equivalence():
    torch.manual_seed(0)
    genomes = torch.randn(4, 867)
    z, h = torch.randn(4, 32), torch.randn(4, 256)
    batched = batched_controller_actions(genomes, z, h, 32, 256)
    c = Controller()
    for i in range(4):
        c.set_flat(genomes[i])
        assert torch.equal(c.get_flat(), genomes[i])
        torch.testing.assert_close(c(z[i:i + 1], h[i:i + 1])[0], batched[i])


def test_wrong_genome_size_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="867"):
        Controller().set_flat(torch.zeros(10))

"""MMD against known answers: the fast permutation path equals the textbook estimate; p-values are
uniform when nothing drifted and small when the latents shifted."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from dreamops.validation.drift.mmd import mmd2_direct, mmd_test


def _samples(seed: int, n: int = 150, shift: float = 0.0, dim: int = 32):
    g = torch.Generator().manual_seed(seed)
    reference = torch.randn(n, dim, generator=g)
    current = torch.randn(n + 20, dim, generator=g)
    current[:, :4] += shift  # drift in 4 of 32 latent dimensions
    return reference, current


@pytest.mark.parametrize("seed", range(3))
def test_fast_statistic_equals_the_textbook_estimate(seed):
    reference, current = _samples(seed, shift=0.3)
    result = mmd_test(reference, current, permutations=10, seed=seed)
    assert result.mmd2 == pytest.approx(mmd2_direct(reference, current, result.sigma), rel=1e-4, abs=1e-7)


def test_p_values_are_uniform_without_drift():
    p_values = [mmd_test(*_samples(seed), permutations=99, seed=seed).p_value for seed in range(60)]
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert sum(p < 0.05 for p in p_values) <= 7  # about 3 expected of 60


def test_shifted_latents_give_small_p_values():
    results = [mmd_test(*_samples(seed, shift=0.5), permutations=99, seed=seed) for seed in range(10)]
    assert all(r.p_value <= 0.01 and r.drift() for r in results)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="need \\[n, d\\]"):
        mmd_test(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test(torch.zeros(1, 3), torch.zeros(10, 3))


def _episodes(seed: int, episodes: int = 40, frames: int = 8, dim: int = 8):
    """Rows of one episode share that episode's offset, as frames of one drive do: nothing drifted,
    but the rows are not independent."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randn(episodes, 1, dim, generator=g).expand(episodes, frames, dim)
    rows = (offsets + 0.2 * torch.randn(episodes, frames, dim, generator=g)).reshape(-1, dim)
    groups = torch.arange(episodes).repeat_interleave(frames)
    half = episodes // 2 * frames
    return rows[:half], rows[half:], groups


def test_episode_blocks_keep_the_false_alarm_rate_when_frames_are_correlated():
    row_p, block_p = [], []
    for seed in range(40):
        reference, current, groups = _episodes(seed)
        row_p.append(mmd_test(reference, current, permutations=99, seed=seed).p_value)
        block_p.append(mmd_test(reference, current, permutations=99, seed=seed, groups=groups).p_value)
    # permuting single frames mistakes episode-to-episode variation for drift...
    assert sum(p < 0.05 for p in row_p) >= 20
    # ...permuting whole episodes does not
    assert sum(p < 0.05 for p in block_p) <= 5
    assert stats.kstest(block_p, "uniform").pvalue > 0.01


def test_episode_blocks_still_detect_a_shift():
    reference, current, groups = _episodes(0)
    assert mmd_test(reference, current + 1.5, permutations=99, seed=0, groups=groups).p_value <= 0.02


def test_groups_must_not_straddle_the_samples():
    reference, current = torch.zeros(4, 2), torch.ones(4, 2)
    with pytest.raises(ValueError, match="straddle"):
        mmd_test(reference, current, groups=torch.tensor([0, 0, 1, 1, 1, 2, 2, 2]))
    with pytest.raises(ValueError, match="one label per row"):
        mmd_test(reference, current, groups=torch.tensor([0, 1]))

"""The detector's Poisson sampler draws exact Poisson counts (the twin's shot noise)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tomopilot.instrument.twin.detector import (
    INVERSION_MAX_MEAN,
    _poisson,
    _poisson_by_inversion,
)

N = 200_000


@pytest.mark.parametrize("mean", [0.0, 1e-3, 0.3, 2.5, 7.0, 11.99, 12.01, 30.0])
def test_counts_follow_the_poisson_distribution(mean: float) -> None:
    lam = np.full((400, N // 400), mean, np.float32)
    counts = _poisson(lam, np.random.default_rng(11))
    assert counts.dtype == np.float32
    assert np.array_equal(counts, np.rint(counts))
    values, seen = np.unique(counts, return_counts=True)
    ks = np.arange(int(values.max()) + 1)
    observed = np.zeros(ks.size)
    observed[values.astype(int)] = seen / counts.size
    pmf = stats.poisson.pmf(ks, mean)
    sigma = np.sqrt(pmf * (1 - pmf) / counts.size)
    assert np.all(np.abs(observed - pmf) <= 5 * sigma + 2e-5), (mean, observed, pmf)
    assert abs(counts.mean() - mean) <= 5 * np.sqrt(max(mean, 1e-9) / counts.size)
    assert counts.var() == pytest.approx(mean, rel=0.03, abs=1e-3)


def test_a_field_of_mixed_means_is_sampled_per_pixel() -> None:
    lam = np.zeros((512, 512), np.float32)
    lam[:256] = 4.0
    lam[256:, :256] = 0.2
    lam[256:, 256:] = 40.0  # above the inversion range: numpy's sampler
    counts = _poisson(lam, np.random.default_rng(5))
    for block, mean in ((counts[:256], 4.0), (counts[256:, :256], 0.2), (counts[256:, 256:], 40.0)):
        assert block.mean() == pytest.approx(mean, rel=0.02)
        assert block.var() == pytest.approx(mean, rel=0.05)
    again = _poisson(lam, np.random.default_rng(5))
    assert np.array_equal(counts, again)  # seeded: the same image every time


def test_a_uniform_above_the_rounded_cdf_ends_in_the_far_tail() -> None:
    mean = np.full(8, INVERSION_MAX_MEAN, np.float32)
    u = np.full(8, np.float32(1.0) - np.float32(2.0**-24), np.float32)
    out = np.empty(8, np.float32)
    _poisson_by_inversion(mean, u, out)  # must terminate
    assert np.all(out >= stats.poisson.ppf(1 - 1e-5, INVERSION_MAX_MEAN))
    assert np.all(out <= 80)

"""In-place real FFTs: the same numbers as scipy's, in the spectrum's own memory."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.imaging.frame_spectra import irfft2_in_place, real_part, rfft2_in_place


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(2, 70),
    threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_in_place_transforms_equal_scipys_bit_for_bit(
    height: int, width: int, threads: int, seed: int
) -> None:
    image = np.random.default_rng(seed).standard_normal((height, width)).astype(np.float32)
    spectrum = np.empty((height, width // 2 + 1), np.complex64)
    real = real_part(spectrum, width)
    real[...] = image
    assert np.shares_memory(real, spectrum)
    rfft2_in_place(spectrum, width, threads)
    expected = sfft.rfft2(image)
    np.testing.assert_array_equal(spectrum, expected)
    back = irfft2_in_place(spectrum, width, threads)
    assert np.shares_memory(back, spectrum)
    np.testing.assert_array_equal(back, sfft.irfft2(expected, s=(height, width)))
    np.testing.assert_allclose(back, image, atol=1e-5 * max(1.0, float(np.abs(image).max())))


def test_real_part_refuses_a_spectrum_that_cannot_hold_the_image() -> None:
    with pytest.raises(ValueError, match="does not hold"):
        real_part(np.empty((4, 3), np.complex64), 8)
    with pytest.raises(ValueError, match="contiguous"):
        real_part(np.empty((4, 10), np.complex64)[:, ::2], 8)

"""Smoothing of measured frame trajectories (beam-induced motion is smooth in time).

At tilt-series dose (a few tenths of an e⁻/Å² per frame) each frame's shift is measured with an
error of tenths of a pixel, while the true motion changes smoothly from frame to frame. A
Whittaker smoother (penalised second differences, Eilers 2003) removes the frame-to-frame
scatter; its strength is chosen per movie by generalised cross-validation, so trajectories that
really bend are kept. The result is re-referenced to frame 0.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> t = np.arange(10.0)
>>> truth = np.c_[0.2 * t, 2.0 * (1 - np.exp(-t / 3))]
>>> noisy = truth + rng.normal(0, 0.15, truth.shape)
>>> smoothed, _ = smooth_trajectory(noisy)
>>> bool(np.abs(smoothed - truth).std() < np.abs(noisy - truth).std())
True
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_LAMBDAS = np.logspace(-2, 3, 31)


def smooth_trajectory(
    shifts_px: NDArray[np.floating], *, strength: float | None = None
) -> tuple[NDArray[np.float64], float]:
    """Smooth an (n, 2) trajectory; returns it (frame 0 = 0) and the strength used.

    Parameters
    ----------
    shifts_px
        Measured (x, y) shift of every frame.
    strength
        Penalty on squared second differences; None chooses it by generalised cross-validation
        (both axes together), between 0.01 and 1000.
    """
    data = np.asarray(shifts_px, np.float64)
    n = data.shape[0]
    if n < 4:
        return data - data[0], 0.0
    # One eigendecomposition of DᵀD serves every strength: H(λ) = V diag(1 / (1 + λ e)) Vᵀ.
    second = np.diff(np.eye(n), 2, axis=0)
    eigenvalues, vectors = np.linalg.eigh(second.T @ second)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    projected = vectors.T @ data
    if strength is None:
        best_score, best_lam = np.inf, 0.0
        for lam in _LAMBDAS:
            shrink = 1.0 / (1.0 + lam * eigenvalues)
            residual = data - vectors @ (projected * shrink[:, None])
            dof = n - float(shrink.sum())
            score = n * float(np.sum(residual**2)) / max(dof, 1e-9) ** 2
            if score < best_score:
                best_score, best_lam = score, float(lam)
        strength = best_lam
    shrink = 1.0 / (1.0 + strength * eigenvalues)
    smoothed = vectors @ (projected * shrink[:, None])
    return smoothed - smoothed[0], float(strength)

"""Detection images: inverse-variance weighted band combination and PSF-smoothed significance."""

from __future__ import annotations

__all__ = ("combine_bands", "smoothed_significance")

from collections.abc import Sequence

import numpy as np
from scipy.signal import fftconvolve


def combine_bands(
    images: Sequence[np.ndarray], variances: Sequence[np.ndarray], goods: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the inverse-variance weighted mean of several band images.

    Parameters
    ----------
    images
        Band images (same shape).
    variances
        Their variance planes.
    goods
        Boolean arrays, True where a band's pixel is usable.

    Returns
    -------
    mean : `numpy.ndarray`
        Weighted mean image (0 where no band is usable).
    variance : `numpy.ndarray`
        Its variance ``1 / sum(1/var)`` (inf where no band is usable).
    good : `numpy.ndarray`
        True where at least one band is usable.
    """
    num = np.zeros(images[0].shape, dtype=np.float64)
    den = np.zeros(images[0].shape, dtype=np.float64)
    for image, variance, good in zip(images, variances, goods, strict=True):
        ok = good & np.isfinite(image) & np.isfinite(variance) & (variance > 0)
        weight = np.where(ok, 1.0 / np.where(ok, variance, 1.0), 0.0)
        num += weight * np.where(ok, image, 0.0)
        den += weight
    good = den > 0
    mean = np.where(good, num / np.where(good, den, 1.0), 0.0)
    variance = np.where(good, 1.0 / np.where(good, den, 1.0), np.inf)
    return mean, variance, good


def smoothed_significance(
    image: np.ndarray, variance: np.ndarray, kernel: np.ndarray, good: np.ndarray
) -> np.ndarray:
    """Return the significance of the PSF-smoothed image (matched filter for point sources).

    Parameters
    ----------
    image
        Image, any unit.
    variance
        Its per-pixel variance.
    kernel
        PSF kernel image (any normalisation).
    good
        True where pixels are usable; others are given zero weight.

    Returns
    -------
    significance : `numpy.ndarray`
        ``conv(image, K) / sqrt(conv(variance, K^2))`` over good pixels; 0 where no good pixel contributes.
    """
    ok = good & np.isfinite(image) & np.isfinite(variance) & (variance > 0)
    data = np.where(ok, image, 0.0)
    var = np.where(ok, variance, 0.0)
    smoothed = fftconvolve(data, kernel, mode="same")
    noise = fftconvolve(var, kernel**2, mode="same")
    # FFT round-off leaves tiny (even negative) values where no good pixel contributes.
    floor = 1e-6 * np.median(var[ok]) * np.sum(kernel**2) if ok.any() else 1.0
    valid = noise > floor
    return np.where(valid, smoothed / np.sqrt(np.where(valid, noise, 1.0)), 0.0)

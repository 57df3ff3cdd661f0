"""Detection images: inverse-variance weighted band combination and PSF-smoothed significance.

Memory: a 4k x 4k patch is 16 Mpx, so every full-patch float64 temporary costs 130 MB. The band
combination therefore accumulates one band at a time and evaluates its elementwise expressions in blocks
of rows (which gives the same values as whole-array expressions), and the smoothing reuses its FFT
buffers in place.
"""

from __future__ import annotations

__all__ = ("BandCombination", "combine_bands", "smoothed_significance")

from collections.abc import Sequence

import numpy as np
from scipy import fft as sp_fft

_BLOCK_ROWS = 256
"""Rows per block of the elementwise band combination (bounds its temporaries to a few MB)."""


def _row_blocks(n_rows: int) -> list[slice]:
    return [slice(start, min(start + _BLOCK_ROWS, n_rows)) for start in range(0, n_rows, _BLOCK_ROWS)]


class BandCombination:
    """Inverse-variance weighted mean of band images, accumulated one band at a time.

    Parameters
    ----------
    shape
        Shape of the band images.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self._num = np.zeros(shape, dtype=np.float64)
        self._den = np.zeros(shape, dtype=np.float64)

    def add(self, image: np.ndarray, variance: np.ndarray, good: np.ndarray) -> None:
        """Add one band.

        Parameters
        ----------
        image, variance
            Band image and its variance plane.
        good
            True where the band's pixel is usable.
        """
        num, den = self._num, self._den
        for rows in _row_blocks(num.shape[0]):
            im, var = image[rows], variance[rows]
            ok = good[rows] & np.isfinite(im) & np.isfinite(var) & (var > 0)
            weight = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0)
            num[rows] += weight * np.where(ok, im, 0.0)
            den[rows] += weight

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(mean, variance, good)`` as `combine_bands` does; the accumulator is consumed."""
        num, den = self._num, self._den
        good = den > 0
        for rows in _row_blocks(num.shape[0]):
            g, d = good[rows], np.where(good[rows], den[rows], 1.0)
            num[rows] = np.where(g, num[rows] / d, 0.0)
            den[rows] = np.where(g, 1.0 / d, np.inf)
        del self._num, self._den
        return num, den, good


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
    combination = BandCombination(np.shape(images[0]))
    for image, variance, good in zip(images, variances, goods, strict=True):
        combination.add(image, variance, good)
    return combination.result()


def _convolve_same(data: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``scipy.signal.fftconvolve(data, kernel, mode="same")`` of 2-d float arrays, with fewer buffers.

    The same real FFTs of the same padded shapes, multiplied in place, so the values are those of
    ``fftconvolve``; it holds two spectra less than ``fftconvolve`` at its peak.
    """
    shape = [n1 + n2 - 1 for n1, n2 in zip(data.shape, kernel.shape, strict=True)]
    fshape = [sp_fft.next_fast_len(n, True) for n in shape]
    spectrum = sp_fft.rfftn(data, fshape, axes=[0, 1])
    spectrum *= sp_fft.rfftn(kernel, fshape, axes=[0, 1])
    full = sp_fft.irfftn(spectrum, fshape, axes=[0, 1])
    del spectrum
    start = [(n - n1) // 2 for n, n1 in zip(shape, data.shape, strict=True)]
    return full[start[0]:start[0] + data.shape[0], start[1]:start[1] + data.shape[1]].copy()


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
    smoothed = _convolve_same(np.where(ok, image, 0.0), kernel)
    var = np.where(ok, variance, 0.0)
    # FFT round-off leaves tiny (even negative) values where no good pixel contributes.
    floor = 1e-6 * np.median(var[ok]) * np.sum(kernel**2) if ok.any() else 1.0
    del ok
    noise = _convolve_same(var, kernel**2)
    del var
    valid = noise > floor
    # In place: smoothed / sqrt(noise) where valid, else 0.
    noise[~valid] = 1.0
    np.sqrt(noise, out=noise)
    np.divide(smoothed, noise, out=smoothed)
    smoothed[~valid] = 0.0
    return smoothed

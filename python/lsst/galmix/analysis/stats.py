"""Robust binned statistics: median and sigma_MAD in bins of a reference quantity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAD_TO_SIGMA",
    "BinnedStats",
    "binned_stats",
    "completeness_purity",
    "flux_to_mag",
    "mag_bins",
    "sigma_mad",
]

MAD_TO_SIGMA = 1.4826
"""Scale of the median absolute deviation to the standard deviation of a Gaussian."""

AB_ZEROPOINT_NJY = 31.4
"""AB magnitude of 1 nJy."""


def flux_to_mag(flux: np.ndarray) -> np.ndarray:
    """AB magnitude of fluxes in nJy (NaN for non-positive flux).

    Parameters
    ----------
    flux : `numpy.ndarray`
        Fluxes in nJy.

    Returns
    -------
    mag : `numpy.ndarray`
        AB magnitudes.
    """
    flux = np.asarray(flux, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flux > 0, AB_ZEROPOINT_NJY - 2.5 * np.log10(flux), np.nan)


def sigma_mad(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation of the finite values.

    Parameters
    ----------
    values : `numpy.ndarray`
        Sample.

    Returns
    -------
    sigma : `float`
        ``1.4826 * median(|v - median(v)|)``, NaN for an empty sample.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def mag_bins(lo: float, hi: float, width: float = 1.0) -> np.ndarray:
    """Bin edges from ``lo`` to ``hi`` in steps of ``width``.

    Parameters
    ----------
    lo, hi : `float`
        First and last edge.
    width : `float`
        Bin width.

    Returns
    -------
    edges : `numpy.ndarray`
        Edges; the last edge is ``hi`` when ``hi - lo`` is a multiple of ``width``.
    """
    n = round((hi - lo) / width)
    return lo + width * np.arange(n + 1)


@dataclass
class BinnedStats:
    """Statistics of ``y`` in bins of ``x``.

    Attributes
    ----------
    edges : `numpy.ndarray`
        Bin edges (``N + 1``).
    count : `numpy.ndarray`
        Number of finite ``y`` per bin.
    median : `numpy.ndarray`
        Median of ``y`` per bin (NaN if empty).
    sigma_mad : `numpy.ndarray`
        sigma_MAD of ``y`` per bin (NaN if empty).
    """

    edges: np.ndarray
    count: np.ndarray
    median: np.ndarray
    sigma_mad: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        """Bin centres."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def to_dict(self) -> dict[str, list]:
        """Plain-Python form (for YAML/JSON metrics); NaN becomes `None`."""

        def clean(a: np.ndarray) -> list:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "bin_lo": [float(v) for v in self.edges[:-1]],
            "bin_hi": [float(v) for v in self.edges[1:]],
            "count": [int(v) for v in self.count],
            "median": clean(self.median),
            "sigma_mad": clean(self.sigma_mad),
        }


def binned_stats(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> BinnedStats:
    """Median and sigma_MAD of ``y`` in bins of ``x`` (half-open ``[lo, hi)``).

    Parameters
    ----------
    x, y : `numpy.ndarray`
        Binning quantity and statistic quantity; pairs with a non-finite value are ignored.
    edges : `numpy.ndarray`
        Bin edges, increasing.

    Returns
    -------
    stats : `BinnedStats`
        The statistics.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    edges = np.asarray(edges, dtype=float)
    good = np.isfinite(x) & np.isfinite(y)
    idx = np.digitize(x[good], edges) - 1
    yg = y[good]
    n_bin = len(edges) - 1
    count = np.zeros(n_bin, dtype=np.int64)
    med = np.full(n_bin, np.nan)
    smad = np.full(n_bin, np.nan)
    for b in range(n_bin):
        sel = yg[idx == b]
        count[b] = len(sel)
        if len(sel):
            med[b] = np.median(sel)
            smad[b] = sigma_mad(sel)
    return BinnedStats(edges=edges, count=count, median=med, sigma_mad=smad)


def completeness_purity(
    ref_mag: np.ndarray,
    ref_matched: np.ndarray,
    target_mag: np.ndarray,
    target_matched: np.ndarray,
    edges: np.ndarray,
) -> dict[str, np.ndarray]:
    """Completeness in bins of reference magnitude and purity in bins of measured magnitude.

    Parameters
    ----------
    ref_mag : `numpy.ndarray`
        Magnitudes of all references (matched or not).
    ref_matched : `numpy.ndarray`
        Whether each reference has a match.
    target_mag : `numpy.ndarray`
        Measured magnitudes of all targets (matched or not).
    target_matched : `numpy.ndarray`
        Whether each target has a match.
    edges : `numpy.ndarray`
        Magnitude bin edges.

    Returns
    -------
    result : `dict` [`str`, `numpy.ndarray`]
        ``n_ref``, ``n_ref_matched``, ``completeness``, ``n_target``, ``n_target_matched``, ``purity``
        per bin (fractions are NaN in empty bins).
    """
    edges = np.asarray(edges, dtype=float)
    n_ref, _ = np.histogram(ref_mag[np.isfinite(ref_mag)], edges)
    sel = np.isfinite(ref_mag) & np.asarray(ref_matched, dtype=bool)
    n_ref_m, _ = np.histogram(ref_mag[sel], edges)
    n_t, _ = np.histogram(target_mag[np.isfinite(target_mag)], edges)
    sel = np.isfinite(target_mag) & np.asarray(target_matched, dtype=bool)
    n_t_m, _ = np.histogram(target_mag[sel], edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "n_ref": n_ref,
            "n_ref_matched": n_ref_m,
            "completeness": np.where(n_ref > 0, n_ref_m / np.maximum(n_ref, 1), np.nan),
            "n_target": n_t,
            "n_target_matched": n_t_m,
            "purity": np.where(n_t > 0, n_t_m / np.maximum(n_t, 1), np.nan),
        }

"""Sersic profiles as Gaussian mixtures: smooth interpolation of the tables in n, with derivatives.

A profile of K Gaussians has weights ``w_k`` (sum 1) and sizes ``s_k``: component k is a Gaussian of
flux ``w_k F`` and covariance ``(s_k reff)^2 R(theta) diag(1, q^2) R(theta)^T`` (doc/conventions.rst),
``reff`` being the half-light radius of the exact Sersic profile.

Between the tabulated nodes the values ``[v_1..v_K, ln s_1..ln s_K]`` are interpolated by a
not-a-knot cubic spline in ``x = ln n``; the weights are then ``w_k = v_k / sum_j v_j`` (the spline is
linear in its data and the table's weights sum to 1 at every node, so this only removes rounding). The spline is exported in
scipy ``PPoly`` layout (`sersic_spline`), which is what the C++ engine evaluates; `sersic_mixture`
evaluates that same layout in numpy. Outside the tabulated range n is clamped to it and the
derivatives are zero.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_N_COMPONENTS",
    "SersicSpline",
    "gaussian_mixture",
    "node_mixture",
    "point_mixture",
    "sersic_mixture",
    "sersic_spline",
    "spline_from_table",
]

import dataclasses
import functools

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import CubicSpline

from .sersic_profile import GAUSSIAN_SIGMA_PER_REFF
from .sersic_table import MixtureTable, read_table

DEFAULT_N_COMPONENTS: int = 10
"""Number of Gaussians of the default Sersic mixture (chosen from measurement: doc/sersic.rst)."""


@dataclasses.dataclass(frozen=True)
class SersicSpline:
    """Piecewise-cubic interpolant of a Sersic mixture table in ``x = ln n`` (scipy PPoly layout).

    On interval ``i`` (``breaks[i] <= x <= breaks[i + 1]``), value ``j`` is
    ``sum_m coeffs[m, i, j] * (x - breaks[i]) ** (3 - m)``. Values ``j < K`` are the unnormalised
    weights ``v_k``; values ``K <= j < 2K`` are ``ln s_k``.

    Attributes
    ----------
    breaks : `numpy.ndarray`, shape (M,)
        ``ln n`` of the table nodes, increasing.
    coeffs : `numpy.ndarray`, shape (4, M - 1, 2K)
        Polynomial coefficients, highest order first, in the local variable ``x - breaks[i]``.
    n_components : int
        Number of Gaussians K.
    """

    breaks: np.ndarray
    coeffs: np.ndarray
    n_components: int

    @property
    def n_min(self) -> float:
        """Smallest tabulated Sersic index."""
        return float(np.exp(self.breaks[0]))

    @property
    def n_max(self) -> float:
        """Largest tabulated Sersic index."""
        return float(np.exp(self.breaks[-1]))

    def values(self, n: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Evaluate the raw spline values and their derivatives with respect to n.

        Parameters
        ----------
        n : array_like
            Sersic index (any shape); clamped to ``[n_min, n_max]``.

        Returns
        -------
        values : `numpy.ndarray`, shape ``n.shape + (2K,)``
            Spline values ``[v_1..v_K, ln s_1..ln s_K]``.
        derivatives : `numpy.ndarray`, shape ``n.shape + (2K,)``
            Their derivatives with respect to n (zero where n was clamped).
        inside : `numpy.ndarray` of `bool`, shape ``n.shape``
            Whether n was inside the tabulated range.
        """
        n = np.asarray(n, dtype=float)
        x_raw = np.log(n)
        x = np.clip(x_raw, self.breaks[0], self.breaks[-1])
        inside = x == x_raw
        i = np.clip(np.searchsorted(self.breaks, x, side="right") - 1, 0, self.breaks.size - 2)
        dx = (x - self.breaks[i])[..., None]
        c = self.coeffs[:, i]
        values = ((c[0] * dx + c[1]) * dx + c[2]) * dx + c[3]
        dvalues_dx = (3.0 * c[0] * dx + 2.0 * c[1]) * dx + c[2]
        derivatives = np.where(inside[..., None], dvalues_dx / n[..., None], 0.0)
        return values, derivatives, inside

    def __call__(self, n: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Evaluate the mixture; see `sersic_mixture`."""
        k = self.n_components
        values, derivatives, _ = self.values(n)
        v, dv = values[..., :k], derivatives[..., :k]
        total = v.sum(axis=-1, keepdims=True)
        w = v / total
        dw_dn = (dv - w * dv.sum(axis=-1, keepdims=True)) / total
        s = np.exp(values[..., k:])
        ds_dn = s * derivatives[..., k:]
        return w, s, dw_dn, ds_dn


def spline_from_table(table: MixtureTable) -> SersicSpline:
    """Build the interpolant of a mixture table.

    Parameters
    ----------
    table : `MixtureTable`
        Nodes, weights and sizes.

    Returns
    -------
    spline : `SersicSpline`
        Not-a-knot cubic spline in ``ln n`` of ``[w_1..w_K, ln s_1..ln s_K]``, PPoly layout; arrays are
        C-contiguous float64 and read-only.
    """
    x = np.log(table.n)
    spline = CubicSpline(x, np.hstack([table.weights, np.log(table.sizes)]), axis=0, bc_type="not-a-knot")
    breaks = np.ascontiguousarray(spline.x, dtype=np.float64)
    coeffs = np.ascontiguousarray(spline.c, dtype=np.float64)
    breaks.setflags(write=False)
    coeffs.setflags(write=False)
    return SersicSpline(breaks=breaks, coeffs=coeffs, n_components=table.n_components)


@functools.cache
def sersic_spline(n_components: int = DEFAULT_N_COMPONENTS) -> SersicSpline:
    """Return the interpolant of the K-Gaussian Sersic table (cached).

    Parameters
    ----------
    n_components : int
        Number of Gaussians K (tables are shipped for K = 10, the default, and 12).

    Returns
    -------
    spline : `SersicSpline`
        ``breaks`` (M,) = ln n of the nodes and ``coeffs`` (4, M-1, 2K) in scipy PPoly layout; both
        C-contiguous float64 and read-only.
    """
    return spline_from_table(read_table(n_components))


def sersic_mixture(
    n: ArrayLike, n_components: int = DEFAULT_N_COMPONENTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the Gaussian mixture of a Sersic profile and its derivatives with respect to n.

    Parameters
    ----------
    n : array_like
        Sersic index (scalar or array). Values outside the tabulated range (0.5 <= n <= 6.5) are
        clamped to it, with zero derivatives.
    n_components : int
        Number of Gaussians K.

    Returns
    -------
    w : `numpy.ndarray`, shape ``n.shape + (K,)``
        Weights (sum 1).
    s : `numpy.ndarray`, shape ``n.shape + (K,)``
        Gaussian sigma of each component in units of ``reff``, increasing.
    dw_dn : `numpy.ndarray`, shape ``n.shape + (K,)``
        ``d w / d n`` (sums to 0).
    ds_dn : `numpy.ndarray`, shape ``n.shape + (K,)``
        ``d s / d n``.
    """
    return sersic_spline(n_components)(n)


def node_mixture(n: float, n_components: int = DEFAULT_N_COMPONENTS) -> tuple[np.ndarray, np.ndarray]:
    """Return the mixture of a Sersic index that is a node of the table (exponential n = 1, de Vaucouleurs
    n = 4): the table's row itself, without interpolation.

    Parameters
    ----------
    n : float
        Sersic index; must be a node of the table.
    n_components : int
        Number of Gaussians K.

    Returns
    -------
    w, s : `numpy.ndarray`, shape (K,)
        Weights (sum 1) and sizes in units of ``reff``.

    Raises
    ------
    ValueError
        If ``n`` is not a node of the table.
    """
    table = read_table(n_components)
    rows = np.flatnonzero(table.n == n)
    if rows.size == 0:
        raise ValueError(f"Sersic index {n} is not a node of the {n_components}-Gaussian table")
    return table.weights[rows[0]].copy(), table.sizes[rows[0]].copy()


def gaussian_mixture() -> tuple[np.ndarray, np.ndarray]:
    """Return the one-component mixture of a Gaussian profile with half-light radius ``reff``.

    Returns
    -------
    w, s : `numpy.ndarray`, shape (1,)
        ``[1]`` and ``[1 / sqrt(2 ln 2)]`` (the sigma of a 2-D Gaussian whose half-light radius is 1).
    """
    return np.array([1.0]), np.array([GAUSSIAN_SIGMA_PER_REFF])


def point_mixture() -> tuple[np.ndarray, np.ndarray]:
    """Return the one-component mixture of a point source (zero size: the model is the PSF).

    Returns
    -------
    w, s : `numpy.ndarray`, shape (1,)
        ``[1]`` and ``[0]``.
    """
    return np.array([1.0]), np.array([0.0])

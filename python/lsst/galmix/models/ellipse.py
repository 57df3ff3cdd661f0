"""Conversions between the fitter's shape parameters and covariances: the one implementation.

The fitter uses ``(ln reff, eta1, eta2)`` with the conformal shear ``eta``: ``q = exp(-|eta|)``, position
angle ``pa = atan2(eta2, eta1) / 2`` (radians, counter-clockwise from +x; doc/conventions.rst). A profile
component of size ``s`` (in units of ``reff``) has covariance ``(s reff)^2 R(pa) diag(1, q^2) R(pa)^T``.
(``theta`` names the fitter's parameter vector, never an angle.)
`covariance_terms` is the package's one Python statement of that formula (the engine's is
``gaussian_from_ellipse`` in C++).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "covariance",
    "covariance_terms",
    "eta_from_q_pa",
    "q_pa_from_covariance",
    "q_pa_from_eta",
    "shape_covariance",
]


def eta_from_q_pa(
    q: float | np.ndarray, pa: float | np.ndarray, check: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Conformal shear ``(eta1, eta2)`` from axis ratio ``q = b/a`` and position angle ``pa`` (radians).

    Parameters
    ----------
    q, pa : `float` or `numpy.ndarray`
        Axis ratio and position angle.
    check : `bool`
        Refuse non-finite or non-positive ``q`` and non-finite ``pa`` (`ValueError`); `False` lets them
        through as non-finite shears (rows of a table that were never fitted).

    Raises
    ------
    ValueError
        If ``check`` and a q is not finite and > 0 or a pa is not finite.
    """
    q = np.asarray(q, dtype=np.float64)
    pa = np.asarray(pa, dtype=np.float64)
    if check and not (np.isfinite(q).all() and (q > 0).all()):
        raise ValueError("eta_from_q_pa: q must be finite and > 0")
    if check and not np.isfinite(pa).all():
        raise ValueError("eta_from_q_pa: pa must be finite")
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = -np.log(q)
    c, s = np.cos(pa), np.sin(pa)  # double-angle forms: 2 pa may overflow where pa does not
    return eta * (c * c - s * s), eta * (2.0 * s * c)


def q_pa_from_eta(
    eta1: float | np.ndarray, eta2: float | np.ndarray, check: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Axis ratio ``q`` and position angle ``pa`` (radians, in (-pi/2, pi/2]) from the conformal shear.

    Parameters
    ----------
    eta1, eta2 : `float` or `numpy.ndarray`
        Conformal shear.
    check : `bool`
        Refuse a non-finite shear (`ValueError`); `False` returns NaN for it.

    Raises
    ------
    ValueError
        If ``check`` and an eta is not finite.
    """
    eta1 = np.asarray(eta1, dtype=np.float64)
    eta2 = np.asarray(eta2, dtype=np.float64)
    if check and not (np.isfinite(eta1).all() and np.isfinite(eta2).all()):
        raise ValueError("q_pa_from_eta: eta1 and eta2 must be finite")
    return np.exp(-np.hypot(eta1, eta2)), 0.5 * np.arctan2(eta2, eta1)


def covariance_terms(size: ArrayLike, q: ArrayLike, pa: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xx, xy, yy)`` of the covariance ``size^2 R(pa) diag(1, q^2) R(pa)^T`` (element-wise).

    Parameters
    ----------
    size : `float` or `numpy.ndarray`
        Major-axis sigma (or ``reff`` for the half-light ellipse).
    q : `float` or `numpy.ndarray`
        Axis ratio.
    pa : `float` or `numpy.ndarray`
        Position angle of the major axis (radians).
    """
    size2, q2 = np.square(size), np.square(q)
    c, s = np.cos(pa), np.sin(pa)
    return size2 * (c * c + q2 * s * s), size2 * c * s * (1.0 - q2), size2 * (s * s + q2 * c * c)


def covariance(size: float, q: float, pa: float) -> np.ndarray:
    """2x2 covariance ``size^2 R diag(1, q^2) R^T`` (`covariance_terms`)."""
    xx, xy, yy = covariance_terms(size, q, pa)
    return np.array([[xx, xy], [xy, yy]], dtype=float)


def shape_covariance(ln_reff: float, eta1: float, eta2: float, check: bool = True) -> np.ndarray:
    """2x2 matrix of the half-light ellipse of the fitter's shape parameters (``reff^2 R diag(1, q^2) R^T``).

    ``check`` is passed to `q_pa_from_eta` (`False`: a non-finite shear gives a NaN matrix).
    """
    q, pa = q_pa_from_eta(eta1, eta2, check=check)
    return covariance(float(np.exp(ln_reff)), float(q), float(pa))


def q_pa_from_covariance(cov: np.ndarray) -> tuple:
    """Major-axis sigma, axis ratio and position angle of a covariance, or of each of a stack of them.

    Parameters
    ----------
    cov : `numpy.ndarray`
        A ``(2, 2)`` covariance or a stack ``(..., 2, 2)``.

    Returns
    -------
    sigma, q, pa : `float` or `numpy.ndarray`
        ``sqrt`` of the largest eigenvalue, ``b/a`` (1 where the covariance is zero) and the major-axis
        angle (radians); floats for one covariance, arrays of the stack's shape otherwise.
    """
    c = np.asarray(cov, dtype=np.float64)
    xx, yy, xy = c[..., 0, 0], c[..., 1, 1], c[..., 0, 1]
    tr, det = xx + yy, xx * yy - xy * xy
    disc = np.sqrt(np.maximum(0.25 * tr * tr - det, 0.0))
    a2, b2 = 0.5 * tr + disc, np.maximum(0.5 * tr - disc, 0.0)
    pa = 0.5 * np.arctan2(2 * xy, xx - yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(a2 > 0, np.sqrt(b2 / a2), 1.0)
    sigma = np.sqrt(np.maximum(a2, 0.0))
    if c.ndim == 2:
        return float(sigma), float(q), float(pa)
    return sigma, q, pa

"""Conversions between the fitter's shape parameters and covariances.

The fitter uses ``(ln reff, eta1, eta2)`` with the conformal shear ``eta``: ``q = exp(-|eta|)``,
``theta = atan2(eta2, eta1) / 2`` (doc/conventions.rst). A profile component of size ``s`` (in units of
``reff``) has covariance ``(s reff)^2 R(theta) diag(1, q^2) R(theta)^T``. `covariance_terms` is the
package's one Python statement of that formula (the engine's is ``gaussian_from_ellipse`` in C++).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "covariance",
    "covariance_terms",
    "eta_from_q_theta",
    "q_theta_from_covariance",
    "q_theta_from_eta",
    "shape_covariance",
]


def eta_from_q_theta(q: float, theta: float) -> tuple[float, float]:
    """Conformal shear from axis ratio and position angle (radians)."""
    e = -np.log(np.clip(q, 1e-12, 1.0))
    return float(e * np.cos(2 * theta)), float(e * np.sin(2 * theta))


def q_theta_from_eta(eta1: float, eta2: float) -> tuple[float, float]:
    """Axis ratio and position angle (radians, in [-pi/2, pi/2)) from the conformal shear."""
    e = float(np.hypot(eta1, eta2))
    return float(np.exp(-e)), float(0.5 * np.arctan2(eta2, eta1))


def covariance_terms(size: ArrayLike, q: ArrayLike, theta: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xx, xy, yy)`` of the covariance ``size^2 R(theta) diag(1, q^2) R(theta)^T`` (element-wise).

    Parameters
    ----------
    size : `float` or `numpy.ndarray`
        Major-axis sigma (or ``reff`` for the half-light ellipse).
    q : `float` or `numpy.ndarray`
        Axis ratio.
    theta : `float` or `numpy.ndarray`
        Position angle of the major axis (radians).
    """
    size2, q2 = np.square(size), np.square(q)
    c, s = np.cos(theta), np.sin(theta)
    return size2 * (c * c + q2 * s * s), size2 * c * s * (1.0 - q2), size2 * (s * s + q2 * c * c)


def covariance(size: float, q: float, theta: float) -> np.ndarray:
    """2x2 covariance ``size^2 R diag(1, q^2) R^T`` (`covariance_terms`)."""
    xx, xy, yy = covariance_terms(size, q, theta)
    return np.array([[xx, xy], [xy, yy]], dtype=float)


def shape_covariance(ln_reff: float, eta1: float, eta2: float) -> np.ndarray:
    """2x2 matrix of the half-light ellipse of the fitter's shape parameters (``reff^2 R diag(1, q^2) R^T``)."""
    q, theta = q_theta_from_eta(eta1, eta2)
    return covariance(float(np.exp(ln_reff)), q, theta)


def q_theta_from_covariance(cov: np.ndarray) -> tuple[float, float, float]:
    """Major-axis sigma, axis ratio and position angle of a covariance.

    Returns
    -------
    sigma, q, theta : `float`
        ``sqrt`` of the largest eigenvalue, ``b/a`` and the major-axis angle (radians).
    """
    xx, yy, xy = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    tr, det = xx + yy, xx * yy - xy * xy
    disc = np.sqrt(max(0.25 * tr * tr - det, 0.0))
    a2, b2 = 0.5 * tr + disc, max(0.5 * tr - disc, 0.0)
    theta = 0.5 * np.arctan2(2 * xy, xx - yy)
    return float(np.sqrt(max(a2, 0.0))), float(np.sqrt(b2 / a2)) if a2 > 0 else 1.0, float(theta)

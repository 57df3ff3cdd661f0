"""The exact (not mixture-approximated) Sersic profile.

The profile is ``I(r) = I_e exp(-b_n ((r / reff)^(1/n) - 1))`` with ``reff`` the half-light radius, so
``b_n`` solves ``P(2n, b_n) = 1/2`` with ``P`` the regularised lower incomplete gamma function, and
the light enclosed within radius ``r`` is ``P(2n, b_n (r / reff)^(1/n))``. These functions are the
reference that the Gaussian-mixture tables are fit to (see ``derive_sersic_mixtures``).
"""

from __future__ import annotations

__all__ = ["GAUSSIAN_SIGMA_PER_REFF", "sersic_b", "sersic_enclosed_fraction", "sersic_surface_brightness"]

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gamma, gammainc, gammaincinv

GAUSSIAN_SIGMA_PER_REFF: float = 1.0 / np.sqrt(2.0 * np.log(2.0))
"""Standard deviation of a circular 2-D Gaussian in units of its half-light radius.

The n = 0.5 Sersic profile is exactly this Gaussian.
"""


def sersic_b(n: ArrayLike) -> np.ndarray | float:
    """Return ``b_n``, the constant that makes ``reff`` the half-light radius.

    Parameters
    ----------
    n : array_like
        Sersic index (> 0).

    Returns
    -------
    b : `numpy.ndarray` or `float`
        ``b_n = P^-1(2n, 1/2)`` (exact, not an asymptotic approximation).
    """
    return gammaincinv(2.0 * np.asarray(n, dtype=float), 0.5)


def sersic_enclosed_fraction(radius: ArrayLike, n: float) -> np.ndarray:
    """Return the fraction of the total light of a circular Sersic profile inside a radius.

    Parameters
    ----------
    radius : array_like
        Radius in units of ``reff`` (>= 0). For an elliptical profile this is the elliptical radius
        along the major axis, i.e. the fraction inside the ellipse with that semi-major axis.
    n : float
        Sersic index (> 0).

    Returns
    -------
    fraction : `numpy.ndarray`
        ``L(< radius) / L_total``, 0.5 at ``radius = 1``.
    """
    r = np.asarray(radius, dtype=float)
    return gammainc(2.0 * n, sersic_b(n) * r ** (1.0 / n))


def sersic_surface_brightness(radius: ArrayLike, n: float) -> np.ndarray:
    """Return the surface brightness of a unit-flux circular Sersic profile with ``reff = 1``.

    Parameters
    ----------
    radius : array_like
        Radius in units of ``reff``.
    n : float
        Sersic index (> 0).

    Returns
    -------
    intensity : `numpy.ndarray`
        Surface brightness per unit area (``reff^-2``), normalised to unit total flux.
    """
    r = np.asarray(radius, dtype=float)
    b = sersic_b(n)
    # Total flux of exp(-b r^(1/n)) over the plane is 2 pi n Gamma(2n) / b^(2n).
    norm = b ** (2.0 * n) / (2.0 * np.pi * n * gamma(2.0 * n))
    return norm * np.exp(-b * r ** (1.0 / n))

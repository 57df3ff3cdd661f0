"""Adaptive (elliptical-Gaussian-weighted) moments and PSF-deconvolved initial guesses.

Adaptive moments iterate the weight ellipse until it matches the object: for a Gaussian object of
covariance ``C`` the fixed point of ``M <- 2 Q(M)`` (``Q`` the weighted second moments) is ``M = C``.
The PSF is removed by subtracting its covariance, which is exact for Gaussians and a good start for
everything else; the fitter does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import engine as ge
from ..models.ellipse import eta_from_q_pa, q_pa_from_covariance

__all__ = ["AdaptiveMoments", "adaptive_moments", "initial_shape", "initial_shapes"]

# Half-light radius of a Gaussian in units of its sigma.
_GAUSS_REFF = float(np.sqrt(2 * np.log(2)))


@dataclass
class AdaptiveMoments:
    """Centroid, covariance and flux of an adaptive-moments measurement.

    Attributes
    ----------
    x, y : `float`
        Centroid in the coordinates of the stamp's origin (absolute pixels when ``x0, y0`` are given).
    cov : `numpy.ndarray`
        2x2 covariance (pixel^2).
    flux : `float`
        Flux of the matched elliptical Gaussian.
    ok : `bool`
        Whether the iteration converged to a positive-definite covariance.
    """

    x: float
    y: float
    cov: np.ndarray
    flux: float
    ok: bool


def adaptive_moments(
    image: np.ndarray,
    weight: np.ndarray | None = None,
    x0: float = 0.0,
    y0: float = 0.0,
    guess: tuple[float, float] | None = None,
    sigma0: float = 2.0,
    max_iter: int = 30,
    fix_centroid: bool = False,
    rtol: float = 1e-3,
) -> AdaptiveMoments:
    """Adaptive second moments of an image.

    Parameters
    ----------
    image : `numpy.ndarray`
        Data ``[ny, nx]``.
    weight : `numpy.ndarray`, optional
        Pixels with zero weight are ignored.
    x0, y0 : `float`
        Absolute coordinates of ``image[0, 0]``.
    guess : `tuple` [`float`, `float`], optional
        Absolute starting centroid (default: the brightest pixel).
    sigma0 : `float`
        Starting weight sigma (pixels).
    max_iter : `int`
        Maximum number of iterations.
    fix_centroid : `bool`
        Hold the centroid at ``guess``.
    rtol : `float`
        Convergence tolerance on the covariance (relative) and centroid (pixels); the moments are only
        a starting point of the fit, so 1e-3 is plenty.

    Returns
    -------
    moments : `AdaptiveMoments`
        The measurement; ``ok`` is False if it failed (the returned values are then the start).
    """
    start = None if guess is None else (float(guess[0]), float(guess[1]))
    x, y, xx, xy, yy, flux, ok = ge.adaptive_second_moments(image, weight, x0, y0, start, sigma0, max_iter,
                                                            fix_centroid, rtol)
    return AdaptiveMoments(x, y, np.array([[xx, xy], [xy, yy]]), flux, ok)


def initial_shape(
    cov: np.ndarray, psf_cov: np.ndarray | None, min_sigma: float = 0.3
) -> tuple[float, float, float]:
    """PSF-deconvolved ``(ln reff, eta1, eta2)`` from a (PSF-convolved) covariance.

    Parameters
    ----------
    cov : `numpy.ndarray`
        Object covariance (pixel^2), e.g. adaptive moments or a catalogue's ``shape_xx`` etc.
    psf_cov : `numpy.ndarray` or `None`
        PSF covariance to subtract.
    min_sigma : `float`
        Floor of the deconvolved major/minor sigma (pixels), so that unresolved objects start small but
        not degenerate.

    Returns
    -------
    ln_reff, eta1, eta2 : `float`
        Starting shape, with ``reff`` the half-light radius of a Gaussian of the deconvolved covariance.
    """
    ln_reff, eta1, eta2 = initial_shapes(np.asarray(cov, dtype=float)[None], psf_cov, min_sigma)
    return float(ln_reff[0]), float(eta1[0]), float(eta2[0])


def initial_shapes(
    cov: np.ndarray, psf_cov: np.ndarray | None, min_sigma: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`initial_shape` of each covariance of a stack ``(N, 2, 2)``: arrays ``(ln reff, eta1, eta2)`` of
    length N."""
    c = np.array(cov, dtype=float)
    if psf_cov is not None:
        c = c - np.asarray(psf_cov, dtype=float)
    evals, evecs = np.linalg.eigh(0.5 * (c + np.swapaxes(c, -1, -2)))
    evals = np.maximum(evals, min_sigma**2)
    c = evecs @ (evals[..., None] * np.eye(2)) @ np.swapaxes(evecs, -1, -2)
    sigma, q, pa = q_pa_from_covariance(c)
    eta1, eta2 = eta_from_q_pa(np.maximum(q, 0.05), pa, check=False)
    return np.log(sigma * _GAUSS_REFF), eta1, eta2

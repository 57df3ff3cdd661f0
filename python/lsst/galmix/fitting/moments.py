"""Adaptive (elliptical-Gaussian-weighted) moments and PSF-deconvolved initial guesses.

Adaptive moments iterate the weight ellipse until it matches the object: for a Gaussian object of
covariance ``C`` the fixed point of ``M <- 2 Q(M)`` (``Q`` the weighted second moments) is ``M = C``.
The PSF is removed by subtracting its covariance, which is exact for Gaussians and a good start for
everything else; the fitter does the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
    img = np.asarray(image, dtype=np.float64)
    use = np.isfinite(img) if weight is None else (np.asarray(weight) > 0) & np.isfinite(img)
    ny, nx = img.shape
    # The used pixels' coordinates, in row-major order (as a boolean index of a full mesh gives them).
    rows, cols = np.nonzero(use)
    xx = cols.astype(float)
    yy = rows.astype(float)
    val = img[use]
    if val.size == 0:
        g = guess if guess is not None else (x0, y0)
        return AdaptiveMoments(g[0], g[1], np.eye(2) * sigma0**2, 0.0, False)
    if guess is None:
        k = int(np.argmax(val))
        cx, cy = xx[k], yy[k]
    else:
        cx, cy = guess[0] - x0, guess[1] - y0
    # The 2 x 2 weight covariance is iterated as Python floats ``(m00, m01, m11)``: the same IEEE operations
    # as on numpy scalars (so the same numbers), without their per-operation overhead (most of the time
    # of a stamp's iteration).
    m00 = m11 = 1.0 * sigma0**2
    m01 = 0.0 * sigma0**2
    ok = False
    flux = 0.0
    # Products of the offsets are recomputed only when the centroid moves (never when it is fixed).
    dx = dy = dxx = dxy = dyy = None
    for _ in range(max_iter):
        det = m00 * m11 - m01 * m01
        if not det > 0:
            break
        if dx is None:
            dx, dy = xx - cx, yy - cy
            dxx, dxy, dyy = dx * dx, dx * dy, dy * dy
        assert dxx is not None and dxy is not None and dyy is not None  # set above (for mypy)
        w = np.exp((-0.5 / det) * (m11 * dxx - 2 * m01 * dxy + m00 * dyy)) * val
        s = w.sum()
        if not s > 0:
            break
        if fix_centroid:
            ncx, ncy = cx, cy
            q00, q01, q11 = (w @ dxx) / s, (w @ dxy) / s, (w @ dyy) / s
        else:
            ncx, ncy = cx + float(w @ dx) / s, cy + float(w @ dy) / s
            ex, ey = dx - (ncx - cx), dy - (ncy - cy)
            q00, q01, q11 = (w @ (ex * ex)) / s, (w @ (ex * ey)) / s, (w @ (ey * ey)) / s
            dx = None
        n00, n01, n11 = _update_terms(m00, m01, m11, float(q00), float(q01), float(q11))
        # Sub-pixel objects: keep the weight from collapsing below the pixel scale.
        tr, det_new = n00 + n11, n00 * n11 - n01 * n01
        lam_min = 0.5 * tr - math.sqrt(max(0.25 * tr * tr - det_new, 0.0))
        add = max(0.0, 1.0 / 12 - lam_min)
        n00, n01, n11 = n00 + add, n01 + 0.0 * add, n11 + add
        if not (math.isfinite(n00) and math.isfinite(n01) and math.isfinite(n11) and n00 * n11 - n01 * n01 > 0):
            break
        scale = max(abs(n00), abs(n11))
        change = max(abs(n00 - m00), abs(n01 - m01), abs(n11 - m11))
        done = (change <= rtol * scale and abs(ncx - cx) < rtol and abs(ncy - cy) < rtol)
        m00, m01, m11, cx, cy = n00, n01, n11, ncx, ncy
        # At the fixed point the weighted sum is half the flux of a Gaussian object.
        flux = 2.0 * float(s)
        if done:
            ok = True
            break
        if not (0 <= cx < nx and 0 <= cy < ny) or m00 > 4 * (nx * nx + ny * ny):
            break
    flux = 2.0 * float(val.clip(min=0).sum()) if not ok else flux
    return AdaptiveMoments(cx + x0, cy + y0, np.array([[m00, m01], [m01, m11]]), flux, ok)


def _update_terms(m00: float, m01: float, m11: float, q00: float, q01: float, q11: float
                  ) -> tuple[float, float, float]:
    """Next weight covariance from the weighted moments ``q`` measured with weight covariance ``m``
    (symmetric 2 x 2 matrices given by their terms ``(xx, xy, yy)``).

    For a Gaussian object of covariance ``C``, ``q = (C^-1 + m^-1)^-1``, so ``C = (q^-1 - m^-1)^-1`` in one
    step (the fixed point ``m = C`` is that of ``m <- 2 q``, reached in 2-4 iterations instead of ~10).
    When noise or a non-Gaussian profile makes that matrix non-positive, or it jumps by more than 4x,
    the plain ``2 q`` step is taken.
    """
    det_q = q00 * q11 - q01 * q01
    det_m = m00 * m11 - m01 * m01
    if det_q > 0 and det_m > 0:
        a = q11 / det_q - m11 / det_m
        b = -q01 / det_q + m01 / det_m
        d = q00 / det_q - m00 / det_m
        det = a * d - b * b
        if a > 0 and det > 0:
            c00, c01, c11 = d / det, -b / det, a / det
            ratio = (c00 + c11) / (m00 + m11)
            if 0.25 < ratio < 4.0:
                return c00, c01, c11
    return 2.0 * q00, 2.0 * q01, 2.0 * q11


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

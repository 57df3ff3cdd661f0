"""Adaptive (elliptical-Gaussian-weighted) moments and PSF-deconvolved initial guesses.

Adaptive moments iterate the weight ellipse until it matches the object: for a Gaussian object of
covariance ``C`` the fixed point of ``M <- 2 Q(M)`` (``Q`` the weighted second moments) is ``M = C``.
The PSF is removed by subtracting its covariance, which is exact for Gaussians and a good start for
everything else; the fitter does the rest.
"""

from __future__ import annotations

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
    m = np.eye(2) * sigma0**2
    ok = False
    flux = 0.0
    # Products of the offsets are recomputed only when the centroid moves (never when it is fixed).
    dx = dy = dxx = dxy = dyy = None
    for _ in range(max_iter):
        det = m[0, 0] * m[1, 1] - m[0, 1] ** 2
        if not det > 0:
            break
        if dx is None:
            dx, dy = xx - cx, yy - cy
            dxx, dxy, dyy = dx * dx, dx * dy, dy * dy
        w = np.exp((-0.5 / det) * (m[1, 1] * dxx - 2 * m[0, 1] * dxy + m[0, 0] * dyy)) * val
        s = w.sum()
        if not s > 0:
            break
        if fix_centroid:
            ncx, ncy = cx, cy
            q = np.array([[w @ dxx, w @ dxy], [w @ dxy, w @ dyy]]) / s
        else:
            ncx, ncy = cx + float(w @ dx) / s, cy + float(w @ dy) / s
            ex, ey = dx - (ncx - cx), dy - (ncy - cy)
            q = np.array([[w @ (ex * ex), w @ (ex * ey)], [w @ (ex * ey), w @ (ey * ey)]]) / s
            dx = None
        new = _update(m, q)
        # Sub-pixel objects: keep the weight from collapsing below the pixel scale.
        tr, det_new = new[0, 0] + new[1, 1], new[0, 0] * new[1, 1] - new[0, 1] ** 2
        lam_min = 0.5 * tr - np.sqrt(max(0.25 * tr * tr - det_new, 0.0))
        new += np.eye(2) * max(0.0, 1.0 / 12 - lam_min)
        if not (np.isfinite(new).all() and new[0, 0] * new[1, 1] - new[0, 1] ** 2 > 0):
            break
        scale = max(abs(new[0, 0]), abs(new[1, 1]))
        done = (abs(new - m).max() <= rtol * scale and abs(ncx - cx) < rtol and abs(ncy - cy) < rtol)
        m, cx, cy = new, ncx, ncy
        # At the fixed point the weighted sum is half the flux of a Gaussian object.
        flux = 2.0 * float(s)
        if done:
            ok = True
            break
        if not (0 <= cx < nx and 0 <= cy < ny) or m[0, 0] > 4 * (nx * nx + ny * ny):
            break
    flux = 2.0 * float(val.clip(min=0).sum()) if not ok else flux
    return AdaptiveMoments(cx + x0, cy + y0, m, flux, ok)


def _update(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Next weight covariance from the weighted moments ``q`` measured with weight covariance ``m``.

    For a Gaussian object of covariance ``C``, ``q = (C^-1 + m^-1)^-1``, so ``C = (q^-1 - m^-1)^-1`` in one
    step (the fixed point ``m = C`` is that of ``m <- 2 q``, reached in 2-4 iterations instead of ~10).
    When noise or a non-Gaussian profile makes that matrix non-positive, or it jumps by more than 4x,
    the plain ``2 q`` step is taken.
    """
    det_q = q[0, 0] * q[1, 1] - q[0, 1] ** 2
    det_m = m[0, 0] * m[1, 1] - m[0, 1] ** 2
    if det_q > 0 and det_m > 0:
        a = q[1, 1] / det_q - m[1, 1] / det_m
        b = -q[0, 1] / det_q + m[0, 1] / det_m
        d = q[0, 0] / det_q - m[0, 0] / det_m
        det = a * d - b * b
        if a > 0 and det > 0:
            c = np.array([[d, -b], [-b, a]]) / det
            ratio = np.trace(c) / np.trace(m)
            if 0.25 < ratio < 4.0:
                return c
    return 2.0 * q


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

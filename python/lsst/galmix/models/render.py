"""The parameter map from model parameters to PSF-convolved Gaussians, and their pixel evaluation.

This is galmix's numpy implementation of the model: the fitter uses it directly, and it is the
reference the C++ engine is checked against. The parameter map (cheap: a few Gaussians) is
differentiated by central differences; the pixel evaluation (the expensive part) is analytic, so the
model derivatives are accurate to ~1e-9 relative.

Gaussians are stored as rows ``[amp, mx, my, cxx, cxy, cyy]`` (``amp`` = integrated flux).
Profiles are evaluated at pixel centres: the PSF mixture already includes the pixel response
(doc/conventions.rst).
"""

from __future__ import annotations

import numpy as np

from .definitions import ModelDef
from .ellipse import q_pa_from_eta
from .profiles import profile_mixture
from .psf_mixture import PsfMixture

__all__ = ["component_gaussians", "evaluate_gaussians", "gaussians_with_jacobian", "render"]

_FD_STEP = 1e-6


def _shape_matrix(eta1: float, eta2: float) -> np.ndarray:
    q, pa = q_pa_from_eta(eta1, eta2, check=False)
    c, s = np.cos(pa), np.sin(pa)
    # R diag(1, q^2) R^T written out.
    return np.array([c * c + q * q * s * s, c * s * (1 - q * q), s * s + q * q * c * c])


def component_gaussians(
    model: ModelDef, theta: np.ndarray, xy_fixed: tuple[float, float], psf: PsfMixture
) -> list[np.ndarray]:
    """PSF-convolved unit-flux Gaussians of every component.

    Parameters
    ----------
    model : `ModelDef`
        The model.
    theta : `numpy.ndarray`
        Nonlinear parameters in ``model.nonlinear_names`` order (natural units: ``n``, not transformed).
    xy_fixed : `tuple` [`float`, `float`]
        Centre used when the model's centroid is fixed.
    psf : `PsfMixture`
        PSF of the band.

    Returns
    -------
    gaussians : `list` [`numpy.ndarray`]
        One ``(n_profile * n_psf, 6)`` array per component; amplitudes sum to 1 per component.
    """
    i = 0
    if model.free_centroid:
        cx, cy = float(theta[0]), float(theta[1])
        i = 2
    else:
        cx, cy = xy_fixed
    out = []
    for comp in model.components:
        if comp.has_shape:
            ln_reff, eta1, eta2 = theta[i : i + 3]
            i += 3
            n = None
            if comp.free_n:
                n = float(theta[i])
                i += 1
            w, s = profile_mixture(comp, n)
            e = _shape_matrix(float(eta1), float(eta2)) * np.exp(2 * ln_reff)
            src = np.column_stack([w, np.zeros_like(w), np.zeros_like(w)] + [s * s * e[k] for k in range(3)])
        else:
            src = np.array([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
        ns, npsf = len(src), psf.n_gauss
        g = np.empty((ns * npsf, 6))
        g[:, 0] = np.repeat(src[:, 0], npsf) * np.tile(psf.frac, ns)
        g[:, 1] = cx + np.tile(psf.dx, ns)
        g[:, 2] = cy + np.tile(psf.dy, ns)
        g[:, 3] = np.repeat(src[:, 3], npsf) + np.tile(psf.xx, ns)
        g[:, 4] = np.repeat(src[:, 4], npsf) + np.tile(psf.xy, ns)
        g[:, 5] = np.repeat(src[:, 5], npsf) + np.tile(psf.yy, ns)
        out.append(g)
    return out


def gaussians_with_jacobian(
    model: ModelDef, theta: np.ndarray, xy_fixed: tuple[float, float], psf: PsfMixture
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Gaussians of every component and their derivatives with respect to ``theta``.

    Returns
    -------
    gaussians : `list` [`numpy.ndarray`]
        As `component_gaussians`.
    jacobians : `list` [`numpy.ndarray`]
        ``(n_gauss, 6, n_theta)`` per component.
    """
    base = component_gaussians(model, theta, xy_fixed, psf)
    jac = [np.zeros(g.shape + (len(theta),)) for g in base]
    for k in range(len(theta)):
        h = _FD_STEP * max(1.0, abs(theta[k]))
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        gp = component_gaussians(model, tp, xy_fixed, psf)
        gm = component_gaussians(model, tm, xy_fixed, psf)
        for c in range(len(base)):
            jac[c][:, :, k] = (gp[c] - gm[c]) / (2 * h)
    return base, jac


def evaluate_gaussians(
    g: np.ndarray, xs: np.ndarray, ys: np.ndarray, dg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sum of Gaussians at pixel positions, and optionally its derivatives.

    Parameters
    ----------
    g : `numpy.ndarray`
        ``(n_gauss, 6)`` Gaussians.
    xs, ys : `numpy.ndarray`
        Pixel-centre coordinates (1-d, same length).
    dg : `numpy.ndarray`, optional
        ``(n_gauss, 6, n_theta)`` derivatives of the Gaussians with respect to parameters.

    Returns
    -------
    value : `numpy.ndarray`
        Model at the pixels.
    deriv : `numpy.ndarray` or `None`
        ``(n_theta, n_pix)`` derivatives (if ``dg`` was given).
    """
    amp, mx, my, cxx, cxy, cyy = (g[:, k : k + 1] for k in range(6))
    det = cxx * cyy - cxy * cxy
    ixx, iyy, ixy = cyy / det, cxx / det, -cxy / det
    dx = xs[None, :] - mx
    dy = ys[None, :] - my
    ax = ixx * dx + ixy * dy
    ay = ixy * dx + iyy * dy
    norm = amp / (2 * np.pi * np.sqrt(det))
    val = norm * np.exp(-0.5 * (dx * ax + dy * ay))
    total = val.sum(axis=0)
    if dg is None:
        return total, None
    with np.errstate(divide="ignore", invalid="ignore"):
        d_amp = np.where(amp != 0, val / amp, 0.0)
    parts = (d_amp, val * ax, val * ay, 0.5 * val * (ax * ax - ixx), val * (ax * ay - ixy),
             0.5 * val * (ay * ay - iyy))
    deriv = np.zeros((dg.shape[2], xs.size))
    for k, part in enumerate(parts):
        deriv += dg[:, k, :].T @ part
    return total, deriv


def render(
    model: ModelDef,
    theta: np.ndarray,
    fluxes: np.ndarray,
    psf: PsfMixture,
    shape: tuple[int, int],
    origin: tuple[float, float] = (0.0, 0.0),
    xy_fixed: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Image of a PSF-convolved model in one band.

    Parameters
    ----------
    model : `ModelDef`
        The model.
    theta : `numpy.ndarray`
        Nonlinear parameters (natural units).
    fluxes : `numpy.ndarray`
        Flux of each component in this band.
    psf : `PsfMixture`
        PSF.
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)``.
    origin : `tuple` [`float`, `float`]
        Absolute ``(x, y)`` of pixel ``[0, 0]``.
    xy_fixed : `tuple` [`float`, `float`]
        Centre for fixed-centroid models.

    Returns
    -------
    image : `numpy.ndarray`
        The model image.
    """
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    xs = (xx.ravel() + origin[0]).astype(float)
    ys = (yy.ravel() + origin[1]).astype(float)
    img = np.zeros(xs.size)
    for g, f in zip(component_gaussians(model, np.asarray(theta, float), xy_fixed, psf), fluxes):
        img += f * evaluate_gaussians(g, xs, ys)[0]
    return img.reshape(ny, nx)

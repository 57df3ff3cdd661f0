"""Thin Python helpers around the C++ engine (:mod:`lsst.galmix._galmix`).

Everything numerical happens in C++; this module only re-exports the bound API and adds small
conveniences (allocating output images, shape-parameter conversions).
"""

from __future__ import annotations

import numpy as np

from ._galmix import (
    Band,
    Component,
    FitOptions,
    FitProblem,
    FitResult,
    FitStatus,
    FixedProfile,
    ParamKind,
    Profile,
    PsfFitResult,
    Scene,
    Source,
    SplineProfile,
    chi2,
    convolve,
    default_psf_fit_options,
    dispatch_info,
    fit,
    fit_batch,
    fit_psf,
    gaussian_from_ellipse,
    gaussian_from_sigma,
    gaussian_to_ellipse,
    gaussian_to_sigma,
    nnls_gram,
    normal_equations,
    render,
)

__all__ = [
    "Band",
    "Component",
    "FitOptions",
    "FitProblem",
    "FitResult",
    "FitStatus",
    "FixedProfile",
    "ParamKind",
    "Profile",
    "PsfFitResult",
    "Scene",
    "Source",
    "SplineProfile",
    "chi2",
    "convolve",
    "default_psf_fit_options",
    "dispatch_info",
    "eta_from_q_theta",
    "fit",
    "fit_batch",
    "fit_psf",
    "gaussian_from_ellipse",
    "gaussian_from_sigma",
    "gaussian_to_ellipse",
    "gaussian_to_sigma",
    "nnls_gram",
    "normal_equations",
    "q_theta_from_eta",
    "render",
    "render_image",
    "scene_image",
]


def render_image(
    mixture: np.ndarray, shape: tuple[int, int], x0: float = 0.0, y0: float = 0.0, dtype: type = np.float64
) -> np.ndarray:
    """Evaluate an ``(N, 6)`` mixture on a new ``shape`` = (ny, nx) image.

    Parameters
    ----------
    mixture : `numpy.ndarray`
        Rows (flux, x, y, xx, xy, yy) in pixel units.
    shape : `tuple` [`int`, `int`]
        (ny, nx) of the image.
    x0, y0 : `float`
        Pixel coordinate of array element [0, 0] (pixel centres are at integers).
    dtype : `type`
        ``numpy.float32`` or ``numpy.float64``.

    Returns
    -------
    image : `numpy.ndarray`
        The mixture evaluated at the pixel centres.
    """
    out = np.empty(shape, dtype=dtype)
    return render(np.asarray(mixture, dtype=np.float64), out, x0, y0)


def scene_image(
    scene: Scene, params: np.ndarray, band: int, psf, shape: tuple[int, int], x0: float = 0.0, y0: float = 0.0
) -> np.ndarray:
    """Model image of one band of a scene on a new float64 image of ``shape`` = (ny, nx)."""
    out = np.empty(shape, dtype=np.float64)
    return scene.image(np.asarray(params, dtype=np.float64), band, psf, out, x0, y0)


def eta_from_q_theta(q: float | np.ndarray, theta: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conformal shear (eta1, eta2) from axis ratio q = b/a and position angle theta (radians).

    Raises
    ------
    ValueError
        If a q is not finite and > 0 or a theta is not finite.
    """
    q = np.asarray(q, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    if not (np.isfinite(q).all() and (q > 0).all()):
        raise ValueError("eta_from_q_theta: q must be finite and > 0")
    if not np.isfinite(theta).all():
        raise ValueError("eta_from_q_theta: theta must be finite")
    eta = -np.log(q)
    c, s = np.cos(theta), np.sin(theta)  # double-angle forms: 2 theta may overflow where theta does not
    return eta * (c * c - s * s), eta * (2.0 * s * c)


def q_theta_from_eta(eta1: float | np.ndarray, eta2: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis ratio q and position angle theta (radians, in (-pi/2, pi/2]) from the conformal shear.

    Raises
    ------
    ValueError
        If an eta is not finite.
    """
    eta1 = np.asarray(eta1, dtype=np.float64)
    eta2 = np.asarray(eta2, dtype=np.float64)
    if not (np.isfinite(eta1).all() and np.isfinite(eta2).all()):
        raise ValueError("q_theta_from_eta: eta1 and eta2 must be finite")
    return np.exp(-np.hypot(eta1, eta2)), 0.5 * np.arctan2(eta2, eta1)

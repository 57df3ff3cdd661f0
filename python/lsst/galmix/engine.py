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
    adaptive_second_moments,
    background_mask,
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
    stamp_half_sizes,
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
    "adaptive_second_moments",
    "background_mask",
    "chi2",
    "convolve",
    "default_psf_fit_options",
    "dispatch_info",
    "fit",
    "fit_batch",
    "fit_psf",
    "gaussian_from_ellipse",
    "gaussian_from_sigma",
    "gaussian_to_ellipse",
    "gaussian_to_sigma",
    "nnls_gram",
    "normal_equations",
    "render",
    "render_image",
    "scene_image",
    "stamp_half_sizes",
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

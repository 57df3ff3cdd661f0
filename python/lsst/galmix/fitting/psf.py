"""Fitting an N-Gaussian mixture to a PSF kernel image.

Weighting: the kernel image is normalised to unit sum and treated as noiseless, so every pixel has the
same weight and the fit minimises the summed squared residual (the L2 distance between kernel and
mixture). Gaussians are evaluated at pixel centres: the mixture therefore includes the pixel response
of the kernel image, as doc/conventions.rst requires. Each Gaussian has its own centre, size and shape;
the fractions are the linear (non-negative) amplitudes, normalised to sum 1.

``psf_chi2`` is the residual power fraction ``sum (kernel - model)^2 / sum kernel^2``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..models.definitions import get_model
from ..models.ellipse import q_theta_from_eta
from ..models.profiles import GAUSS_SIZE
from ..models.psf_mixture import PsfMixture
from .flags import FlagSet
from .moments import adaptive_moments, initial_shape
from .optimize import BandData, FitSettings, SourceSpec, fit_model
from .schema import empty_psf_table

__all__ = ["PsfFit", "fit_psf_image", "fit_psf_images_table", "psf_at"]

# A point-like "PSF" for fitting the PSF itself: Gaussians need a positive-definite covariance and
# 1e-10 pixel^2 changes pixel values by far less than double-precision rounding of the kernel.
_DELTA = PsfMixture([1.0], [0.0], [0.0], [1e-10], [1e-10], [0.0])
_SIZES = {1: [1.0], 2: [0.8, 2.0], 3: [0.6, 1.2, 3.0], 4: [0.5, 1.0, 2.0, 4.0]}
_LARGE_CHI2 = 0.05**2


@dataclass
class PsfFit:
    """A fitted PSF mixture.

    Attributes
    ----------
    mixture : `PsfMixture` or `None`
        The mixture (`None` if the fit failed).
    chi2 : `float`
        Residual power fraction.
    n_iter : `int`
        Optimizer iterations.
    flags : `FlagSet`
        PSF flags.
    time : `float`
        Wall-clock seconds.
    """

    mixture: PsfMixture | None
    chi2: float
    n_iter: int
    flags: FlagSet
    time: float


def fit_psf_image(kernel: np.ndarray, n_gauss: int = 2, max_iter: int = 200) -> PsfFit:
    """Fit an ``n_gauss``-Gaussian mixture to a PSF kernel image.

    Parameters
    ----------
    kernel : `numpy.ndarray`
        Kernel image ``[ny, nx]`` centred on pixel ``(nx // 2, ny // 2)``.
    n_gauss : `int`
        Number of Gaussians, 1 to 4.
    max_iter : `int`
        Iteration limit.

    Returns
    -------
    fit : `PsfFit`
        The mixture with offsets relative to the kernel centre pixel; never raises for bad input
        (``no_data``, ``bad_fit``, ``exception`` flags instead).
    """
    if n_gauss not in _SIZES:
        raise ValueError(f"n_gauss must be 1 to 4, not {n_gauss}")
    t0 = time.perf_counter()
    flags = FlagSet(psf=True)
    try:
        k = np.asarray(kernel, dtype=np.float64)
        total = k.sum() if k.size else 0.0
        if k.ndim != 2 or k.size == 0 or not np.isfinite(k).all() or not total > 0:
            flags.set("no_data")
            return PsfFit(None, np.nan, 0, flags, time.perf_counter() - t0)
        k = k / total
        ny, nx = k.shape
        cx, cy = nx // 2, ny // 2
        yy, xx = np.mgrid[0:ny, 0:nx]
        band = BandData((xx.ravel() - cx).astype(float), (yy.ravel() - cy).astype(float), k.ravel(),
                        np.ones(k.size), _DELTA)
        mom = adaptive_moments(k, x0=-cx, y0=-cy, guess=(0.0, 0.0))
        ln_r, e1, e2 = initial_shape(mom.cov, None, min_sigma=0.3)
        gauss = get_model("gauss")
        sources = [SourceSpec(gauss, (0.0, 0.0)) for _ in range(n_gauss)]
        theta0 = np.concatenate([[mom.x, mom.y, ln_r + np.log(s), e1, e2] for s in _SIZES[n_gauss]])
        res = fit_model(sources, theta0, [band], FitSettings(max_iter=max_iter, reff_bounds=(1e-3, 1e4)))
        f = res.fluxes[0]
        if not (np.isfinite(res.theta).all() and np.isfinite(f).all() and f.sum() > 0):
            flags.set("bad_fit")
            return PsfFit(None, np.nan, res.n_iter, flags, time.perf_counter() - t0)
        frac, dx, dy, cxx, cyy, cxy = [], [], [], [], [], []
        for i in range(n_gauss):
            x, y, ln_reff, eta1, eta2 = res.theta[5 * i : 5 * i + 5]
            q, th = q_theta_from_eta(eta1, eta2)
            sig = np.exp(ln_reff) * GAUSS_SIZE
            c, s = np.cos(th), np.sin(th)
            frac.append(f[i] / f.sum())
            dx.append(x)
            dy.append(y)
            cxx.append(sig**2 * (c * c + q * q * s * s))
            cyy.append(sig**2 * (s * s + q * q * c * c))
            cxy.append(sig**2 * c * s * (1 - q * q))
        keep = np.asarray(frac) > 0
        if not keep.any():
            flags.set("bad_fit")
            return PsfFit(None, np.nan, res.n_iter, flags, time.perf_counter() - t0)
        # Gaussians with zero amplitude stay in the table (frac 0) so every row has n_gauss entries.
        mix = PsfMixture(frac, dx, dy, cxx, cyy, cxy)
        chi2 = res.chi2 / float((k * k).sum())
        flags.set("no_convergence", not res.converged)
        flags.set("large_chi2", chi2 > _LARGE_CHI2)
        if not mix.is_valid():
            flags.set("bad_fit")
            return PsfFit(None, chi2, res.n_iter, flags, time.perf_counter() - t0)
        return PsfFit(mix, chi2, res.n_iter, flags, time.perf_counter() - t0)
    except Exception:  # noqa: BLE001 - one bad kernel must give flags, not stop a patch
        flags.set("exception")
        return PsfFit(None, np.nan, 0, flags, time.perf_counter() - t0)


def fit_psf_images_table(
    kernels: list[np.ndarray],
    positions: list[tuple[float, float]],
    cells: list[tuple[int, int]] | None = None,
    n_gauss: int = 2,
) -> Table:
    """Fit many kernel images and return a ``galmix_psf_fits`` table.

    Parameters
    ----------
    kernels : `list` [`numpy.ndarray`]
        Kernel images (`None` entries give ``no_data`` rows).
    positions : `list` [`tuple` [`float`, `float`]]
        Tract ``(x, y)`` where each kernel applies (cell centres).
    cells : `list` [`tuple` [`int`, `int`]], optional
        Cell indices ``(cell_x, cell_y)``; default ``(i, 0)``.
    n_gauss : `int`
        Number of Gaussians.

    Returns
    -------
    table : `astropy.table.Table`
        One row per kernel with the columns of `lsst.galmix.fitting.schema.psf_columns`.
    """
    table = empty_psf_table(n_gauss, len(kernels))
    for i, kern in enumerate(kernels):
        fit = fit_psf_image(kern if kern is not None else np.zeros((0, 0)), n_gauss)
        cx, cy = cells[i] if cells is not None else (i, 0)
        table["cell_x"][i], table["cell_y"][i] = cx, cy
        table["x"][i], table["y"][i] = positions[i]
        if fit.mixture is not None:
            for key, val in fit.mixture.to_row().items():
                table[key][i] = val
        table["psf_chi2"][i] = fit.chi2
        table["psf_nIter"][i] = fit.n_iter
        for name in fit.flags.names():
            table[f"psf_flag_{name}"][i] = True
        table["psf_flag"][i] = fit.flags.fatal or fit.mixture is None
    return table


PsfSpec = PsfMixture | Table | Callable[[float, float], "PsfMixture | np.ndarray | None"]


def psf_at(spec: PsfSpec | None, x: float, y: float, n_gauss: int = 2) -> PsfMixture | None:
    """The PSF mixture of a band at a position.

    Parameters
    ----------
    spec : `PsfMixture`, `astropy.table.Table` or callable
        A fixed mixture; a ``galmix_psf_fits`` table (the row of the nearest ``x, y`` among rows without
        ``psf_flag``); or a callable ``(x, y)`` returning a mixture or a kernel image (fitted here with
        ``n_gauss`` Gaussians).
    x, y : `float`
        Tract position.
    n_gauss : `int`
        Gaussians for kernel images returned by a callable.

    Returns
    -------
    psf : `PsfMixture` or `None`
        `None` when no valid PSF is available.
    """
    if spec is None:
        return None
    if isinstance(spec, PsfMixture):
        return spec if spec.is_valid() else None
    if isinstance(spec, Table):
        good = ~np.asarray(spec["psf_flag"], bool)
        if not good.any():
            return None
        idx = np.flatnonzero(good)
        d2 = (np.asarray(spec["x"])[idx] - x) ** 2 + (np.asarray(spec["y"])[idx] - y) ** 2
        mix = PsfMixture.from_row(spec[int(idx[np.argmin(d2)])])
        return mix if mix.is_valid() else None
    out = spec(x, y)
    if out is None or isinstance(out, PsfMixture):
        return out if out is None or out.is_valid() else None
    return fit_psf_image(np.asarray(out), n_gauss).mixture

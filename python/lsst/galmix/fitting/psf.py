"""Fitting an N-Gaussian mixture to a PSF kernel image.

Weighting: the kernel image is normalised to unit sum and treated as noiseless, so every pixel has the
same weight and the fit minimises the summed squared residual (the L2 distance between kernel and
mixture). Gaussians are evaluated at pixel centres: the mixture therefore includes the pixel response
of the kernel image, as doc/conventions.rst requires. Each Gaussian has its own centre, size and shape;
the fractions are the linear (non-negative) amplitudes fitted to the unit-sum kernel and are NOT
renormalised: their sum is the fraction of the kernel's light the mixture holds (just below 1, the
wings it misses). With free amplitudes the least-squares normal equations give
``sum(kernel * mixture) = sum(mixture^2)``, so a sky-limited fit of ``F * mixture`` to a star of flux ``F``
returns ``F`` exactly; renormalising to unit sum would bias it by the missed wing fraction.

Kernel normalisation: a kernel image is the image of a unit-flux point source. LSST kernels are normalised
to unit sum; a kernel rendered from a PSF profile of unit total flux (GalSim's ``drawImage``) sums to the
fraction of the light inside its box (a Moffat of beta 3.5 and FWHM 4 pixels keeps 99.93% in 33 x 33 pixels)
and the data of a star hold the same fraction on the same pixels. The fit is made to the unit-sum kernel
and the fractions are then multiplied by the kernel's sum, so the fluxes of sources are their total
fluxes, not the part inside the kernel's box (which is 0.5-1.4 mmag fainter for the simulated repository's
Moffat PSFs). A sum outside [`KERNEL_SUM_MIN`, 1] cannot be such an image (an unnormalised kernel); it is
normalised to unit sum. ``psf_kernel_sum`` records the sum.

``psf_chi2`` is the residual power fraction ``sum (kernel - model)^2 / sum kernel^2``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from astropy.table import Table

from .. import engine as ge
from ..models.definitions import get_model
from ..models.ellipse import covariance_terms, q_pa_from_eta
from ..models.profiles import GAUSS_SIZE
from ..models.psf_mixture import PsfMixture
from ..schema import (
    FlagSet,
    columns_to_table,
    empty_columns,
    psf_columns,
    psf_flag_column,
    psf_mixture_from_row,
    psf_mixture_row,
)
from .config import FitSettings, PsfFitConfig
from .engine_backend import _unconstrained_fluxes as unconstrained_fluxes
from .engine_backend import make_problem
from .moments import adaptive_moments, initial_shape, initial_shapes
from .optimize import BandInput, SourceSpec
from .timing import stage

__all__ = ["KERNEL_SUM_MIN", "PsfFit", "fit_psf_image", "fit_psf_images_table", "nearest_psf", "psf_at"]

# A point-like "PSF" for fitting the PSF itself: Gaussians need a positive-definite covariance and
# 1e-10 pixel^2 changes pixel values by far less than double-precision rounding of the kernel.
_DELTA = PsfMixture(np.array([1.0]), np.array([0.0]), np.array([0.0]), np.array([1e-10]), np.array([1e-10]),
                    np.array([0.0]))
# Starting sizes (units of the moments sigma) per number of Gaussians: measured on Moffat (FWHM 2.5-6
# pixels), Kolmogorov, HSC and SDSS kernels, these reach the best minimum found among the sets tried.
_SIZES = {1: [[1.0]], 2: [[0.8, 2.0]], 3: [[0.5, 1.0, 2.0]], 4: [[0.6, 1.0, 1.6, 2.5]]}
_LARGE_CHI2 = 0.05**2
# Kernel images are pixel-integrated, so no real component is narrower than a pixel (variance >= 1/12
# per axis). Narrower Gaussians evaluated at pixel centres can hide arbitrary flux between pixels,
# so sizes are bounded below and fits with a narrower minor axis are rejected.
_MIN_REFF = 0.5
_MIN_SIGMA = 0.25
_MIN_SIGMA_SQ = _MIN_SIGMA**2
KERNEL_SUM_MIN = 0.9
"""Smallest kernel sum read as the enclosed light of a unit-flux PSF (a box that loses more than 10% of
the PSF's light is no kernel; such sums come from kernels in other units)."""
_KERNEL_SUM_MAX = 1.0 + 1e-6  # rounding of a unit-sum kernel


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
    kernel_sum : `float`
        Sum of the kernel image (the mixture's fractions include it when it is a unit-flux PSF's
        enclosed light, see the module docstring).
    """

    mixture: PsfMixture | None
    chi2: float
    n_iter: int
    flags: FlagSet
    kernel_sum: float = float("nan")


def _minor_ok(mix: PsfMixture) -> bool:
    """Whether the mixture is valid and no Gaussian's minor-axis sigma is below ``_MIN_SIGMA``."""
    if not mix.is_valid():
        return False
    # Scalar arithmetic on the few Gaussians (numpy's per-call cost dominates at this size); the same
    # operations as the array form, so the same minor axes to the bit.
    for xx, yy, xy in zip(mix.xx.tolist(), mix.yy.tolist(), mix.xy.tolist()):
        d = xx - yy
        if not 0.5 * (xx + yy) - math.sqrt(0.25 * (d * d) + xy * xy) >= _MIN_SIGMA_SQ:
            return False
    return True


@cache
def _concentric_options(max_iter: int) -> ge.FitOptions:
    """Options of the engine's concentric fit (`lsst.galmix.engine.default_psf_fit_options`); shared, read
    only."""
    opts = ge.default_psf_fit_options()
    opts.max_iter = max_iter
    return opts


def _power(k: np.ndarray) -> float:
    """``sum(k^2)``, the denominator of ``psf_chi2``."""
    return float((k * k).sum())


def _fit_concentric(k: np.ndarray, n_gauss: int, max_iter: int, power: float | None = None) -> PsfFit | None:
    """The C++ fit of concentric Gaussians to a normalised kernel; `None` if it failed or is degenerate
    (then free-centre fits from moments are tried). ``power`` is `_power` of ``k`` (computed when
    `None`; `fit_psf_image` computes it once for all its fits)."""
    res = ge.fit_psf(k, n_gauss=n_gauss, options=_concentric_options(max_iter))
    g = np.asarray(res.gaussians)
    if g.shape != (n_gauss, 6) or not np.isfinite(g).all() or not g[:, 0].sum() > 0:
        return None
    cx, cy = k.shape[1] // 2, k.shape[0] // 2
    mix = PsfMixture(g[:, 0] * float(res.flux), g[:, 1] - cx, g[:, 2] - cy, g[:, 3], g[:, 5], g[:, 4])
    if not _minor_ok(mix):
        return None
    flags = FlagSet(psf=True)
    flags.set("no_convergence", int(res.status) == int(ge.FitStatus.MAX_ITER))
    if int(res.status) not in (int(ge.FitStatus.CONVERGED), int(ge.FitStatus.MAX_ITER)):
        return None
    chi2 = float(res.chi2) / (_power(k) if power is None else power)
    flags.set("large_chi2", chi2 > _LARGE_CHI2)
    return PsfFit(mix, chi2, int(res.n_iter), flags)


def _mixture(theta: np.ndarray, fluxes: np.ndarray, n_gauss: int) -> PsfMixture | None:
    """Mixture from the parameters of ``n_gauss`` Gaussian "sources" (None if degenerate)."""
    if not (np.isfinite(theta).all() and np.isfinite(fluxes).all() and fluxes.sum() > 0):
        return None
    t = np.asarray(theta, dtype=np.float64)[: 5 * n_gauss].reshape(n_gauss, 5)
    # theta is finite (checked above): no second check in q_pa_from_eta.
    xx, xy, yy = covariance_terms(np.exp(t[:, 2]) * GAUSS_SIZE, *q_pa_from_eta(t[:, 3], t[:, 4], check=False))
    # Gaussians with zero amplitude stay (frac 0) so every row has n_gauss entries.
    mix = PsfMixture(np.array(fluxes[:n_gauss], dtype=np.float64), t[:, 0].copy(), t[:, 1].copy(), xx, yy, xy)
    return mix if _minor_ok(mix) else None


def _moments_start(k: np.ndarray, sizes: list[float]) -> np.ndarray:
    """Free-centre start: every Gaussian at the kernel's adaptive moments, scaled by ``sizes``."""
    ny, nx = k.shape
    mom = adaptive_moments(k, x0=-(nx // 2), y0=-(ny // 2), guess=(0.0, 0.0))
    ln_r, e1, e2 = initial_shape(mom.cov, None, min_sigma=0.3)
    return np.concatenate([[mom.x, mom.y, ln_r + np.log(s), e1, e2] for s in sizes])


def _mixture_start(mix: PsfMixture) -> np.ndarray:
    """Free-centre start at the Gaussians of a fitted mixture (e.g. the concentric engine fit):
    `initial_shapes` of the Gaussians' covariances (floored at ``_MIN_SIGMA``)."""
    cov = np.empty((mix.n_gauss, 2, 2))
    cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 0], cov[:, 1, 1] = mix.xx, mix.xy, mix.xy, mix.yy
    ln_r, eta1, eta2 = initial_shapes(cov, None, min_sigma=_MIN_SIGMA)
    return np.column_stack([mix.dx, mix.dy, ln_r, eta1, eta2]).ravel()


@cache
def _scene_settings(max_iter: int) -> FitSettings:
    """Optimizer settings of the free-centre fits (frozen: shared by every call)."""
    settings = FitSettings(max_iter=max_iter, reff_bounds=[_MIN_REFF, 1e4])
    settings.freeze()
    return settings


@cache
def _scene_specs(n_gauss: int) -> tuple[SourceSpec, ...]:
    """The ``n_gauss`` Gaussian sources of the free-centre fits (shared, read only)."""
    gauss = get_model("gauss")
    return tuple(SourceSpec(gauss, (0.0, 0.0)) for _ in range(n_gauss))


@cache
def _unit_weight(shape: tuple[int, int]) -> np.ndarray:
    """Uniform unit weights of a kernel of this shape (read-only, shared: kernels are noiseless)."""
    w = np.ones(shape)
    w.flags.writeable = False
    return w


SYMMETRIC_GAIN = 1e-3
"""A concentric PSF fit is refined with free centres unless free centres can lower its ``psf_chi2`` by at
most this fraction of it (`_centres_fixed_by_symmetry`)."""


def _centres_fixed_by_symmetry(k: np.ndarray, fit: PsfFit, power: float) -> bool:
    """Whether a free-centre refinement of the concentric ``fit`` of the unit-sum kernel ``k`` cannot
    lower its ``psf_chi2`` by more than `SYMMETRIC_GAIN` of it.

    Write the kernel as the sum of its parts even and odd under the point reflection about the array
    centre, ``((nx - 1) / 2, (ny - 1) / 2)``. A concentric mixture centred there is even, so its residual's
    odd part is the kernel's, and the derivatives of the model by each Gaussian's centre are odd: the
    gradient of the refinement's objective at its start is the odd part's alone, and a Gauss-Newton step
    from there lowers the residual power by at most the odd part's power. Every kernel drawn from a
    symmetric profile (GalSim Moffat, Kolmogorov, sheared or not, centred on the array) has no odd part
    at all: on 900 cell kernels of the simulated repositories' PSF fields (25-41 pixels, 6 bands) the
    refinements this skips lowered ``psf_chi2`` by at most 1.2e-7 of it (4 Gaussians; 2e-9 with 3), the
    optimizer's tolerance, at 0.17 ms of a 1 ms fit. Measured kernels (HSC, Legacy Surveys) have odd
    parts about as large as the concentric residual, and are refined.
    """
    ny, nx = k.shape
    mix = fit.mixture
    # Offsets of the fit's centre from the array's centre pixel (nx // 2, ny // 2).
    off_x, off_y = (nx - 1) / 2 - nx // 2, (ny - 1) / 2 - ny // 2
    if mix is None or not (np.abs(mix.dx - off_x).max() <= 1e-6 and np.abs(mix.dy - off_y).max() <= 1e-6):
        return False
    # The argument needs the concentric fit at a minimum the refinement starts from. A Gaussian without
    # flux, or wider than the kernel image, is one the concentric fit could not place: with 3 Gaussians on
    # the simulated repositories' Moffats it stopped with one at zero flux and 1e7 pixels or more, or at
    # sigma 18-100 pixels on a 25-41 pixel kernel, and the refinement (its size bounds, fresh fluxes) found
    # a residual 20-700x lower, centres unmoved.
    ny_half, nx_half = 0.5 * ny, 0.5 * nx
    if not ((mix.frac > 0).all() and mix.xx.max() <= nx_half**2 and mix.yy.max() <= ny_half**2):
        return False
    odd = k - k[::-1, ::-1]  # twice the odd part
    return bool(0.25 * float((odd * odd).sum()) <= SYMMETRIC_GAIN * fit.chi2 * power)


def _fit_scene(
    k: np.ndarray, n_gauss: int, max_iter: int, theta0: np.ndarray, power: float | None = None,
    beat: float | None = None,
) -> PsfFit | None:
    """C++ fit of ``n_gauss`` Gaussians with free centres from ``theta0`` (``power``: as for
    `_fit_concentric`).

    The result is read without the parameter covariance (`engine_backend.run_problems` inverts the Fisher
    matrix for the catalogue's errors; a PSF mixture has none, and the inversion cost more than the fit).
    With ``beat`` (the ``psf_chi2`` of the fit it would replace), a fit whose ``psf_chi2`` is not below it
    is `None` without building its mixture: on symmetric kernels the refinement of a concentric fit
    ends where it started, and loses the comparison about half the time.
    """
    ny, nx = k.shape
    band = BandInput(k, _unit_weight((ny, nx)), -(nx // 2), -(ny // 2), _DELTA)
    prob = make_problem(_scene_specs(n_gauss), theta0, [band], _scene_settings(max_iter))
    res = ge.fit_batch([prob.problem], n_threads=1)[0]
    status = int(res.status)
    if status in (int(ge.FitStatus.NON_FINITE), int(ge.FitStatus.ERROR)):
        return None
    params, chi2 = np.asarray(res.params), float(res.chi2)
    # The reported fractions are the unconstrained linear solution, as for every engine fit.
    params, _, chi2 = unconstrained_fluxes(prob, params, np.asarray(res.fisher), chi2)
    chi2 /= _power(k) if power is None else power
    if beat is not None and not chi2 < beat:
        return None
    mix = _mixture(params[prob.theta_index], params[prob.flux_index], n_gauss)
    if mix is None:
        return None
    flags = FlagSet(psf=True)
    flags.set("no_convergence", status != int(ge.FitStatus.CONVERGED))
    flags.set("large_chi2", chi2 > _LARGE_CHI2)
    return PsfFit(mix, chi2, int(res.n_iter), flags)


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
    flags = FlagSet(psf=True)
    try:
        k = np.asarray(kernel, dtype=np.float64)
        total = float(k.sum()) if k.size else 0.0
        # A finite sum has no NaN or infinite term; only a non-finite one needs the pixel-by-pixel test
        # (finite pixels whose sum overflows are data, as before).
        finite = math.isfinite(total) or bool(np.isfinite(k).all())
        if k.ndim != 2 or k.size == 0 or not finite or not total > 0:
            flags.set("no_data")
            return PsfFit(None, np.nan, 0, flags)
        k = k / total
        power = _power(k)
        fit = _fit_concentric(k, n_gauss, max_iter, power)
        # Real kernels are not concentric (HSC: 3-7x lower chi2 with free centres), so 3-4 Gaussians are
        # refined with free centres, from the concentric fit when there is one (1-10 iterations), unless
        # the kernel's symmetry leaves free centres nothing to gain.
        if fit is None:
            starts = [_moments_start(k, s) for s in _SIZES[n_gauss]]
        elif n_gauss >= 3 and fit.mixture is not None and not _centres_fixed_by_symmetry(k, fit, power):
            starts = [_mixture_start(fit.mixture)]
        else:
            starts = []
        for theta0 in starts:
            other = _fit_scene(k, n_gauss, max_iter, theta0, power, None if fit is None else fit.chi2)
            if other is not None and (fit is None or other.chi2 < fit.chi2):
                fit = other
        if fit is None:
            flags.set("bad_fit")
            return PsfFit(None, np.nan, 0, flags)
        fit.kernel_sum = float(total)
        if KERNEL_SUM_MIN <= total <= _KERNEL_SUM_MAX and fit.mixture is not None:
            fit.mixture.frac = fit.mixture.frac * total
        return fit
    except Exception:  # noqa: BLE001 - one bad kernel must give flags, not stop a patch
        flags.set("exception")
        return PsfFit(None, np.nan, 0, flags)


def fit_psf_images_table(
    kernels: list[np.ndarray],
    positions: list[tuple[float, float]],
    cells: list[tuple[int, int]] | None = None,
    config: PsfFitConfig | None = None,
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
    config : `PsfFitConfig`, optional
        Number of Gaussians and iteration limit (default `PsfFitConfig()`).

    Returns
    -------
    table : `astropy.table.Table`
        One row per kernel with the columns of `lsst.galmix.schema.psf_columns`.
    """
    cfg = config if config is not None else PsfFitConfig()
    # Identical kernels (a PSF constant across cells, repeated cells) are fitted once: the fit of a kernel
    # depends on its pixels, size and the settings only, so a repeat gets the same row.
    # Keyed by a 128-bit digest of the pixels, not the pixels: object mode holds thousands of kernels.
    fits: dict[tuple[tuple[int, ...], bytes], PsfFit] = {}
    row_fits: list[PsfFit] = []
    with stage("fit"):
        for kern in kernels:
            k = np.ascontiguousarray(kern if kern is not None else np.zeros((0, 0)), dtype=np.float64)
            key = (k.shape, hashlib.blake2b(k.tobytes(), digest_size=16).digest())
            fit = fits.get(key)
            if fit is None:
                fit = fits[key] = fit_psf_image(k, cfg.n_gauss, cfg.max_iter)
            row_fits.append(fit)
    with stage("write"):
        # Columns are filled as arrays (one assignment per cell of an array, not of an astropy table) and
        # become the table's columns without a copy.
        defs = psf_columns(cfg.n_gauss)
        cols = empty_columns(defs, len(kernels))
        for i, fit in enumerate(row_fits):
            cols["cell_x"][i], cols["cell_y"][i] = cells[i] if cells is not None else (i, 0)
            cols["x"][i], cols["y"][i] = positions[i]
            if fit.mixture is not None:
                for name, val in psf_mixture_row(fit.mixture).items():
                    cols[name][i] = val
            cols["psf_chi2"][i] = fit.chi2
            cols["psf_kernel_sum"][i] = fit.kernel_sum
            cols["psf_nIter"][i] = fit.n_iter
            for name in fit.flags.names():
                cols[psf_flag_column(name)][i] = True
            cols[psf_flag_column()][i] = fit.flags.fatal or fit.mixture is None
        return columns_to_table(defs, cols)


type PsfSpec = PsfMixture | Table | Callable[[float, float], "PsfMixture | np.ndarray | None"]


def nearest_psf(table: Table) -> Callable[[float, float], PsfMixture | None]:
    """The PSF lookup of a ``galmix_psf_fits`` table: ``(x, y)`` -> the mixture of the nearest row among
    rows without ``psf_flag`` (`None` without such a row, or when its mixture is not valid).

    Each row's mixture is read once and shared by every position it serves: reading a table row costs
    ~0.1 ms (astropy rebuilds the column list per access), once per object and band before.
    """
    good = np.flatnonzero(~np.asarray(table[psf_flag_column()], bool))
    xs, ys = np.asarray(table["x"])[good], np.asarray(table["y"])[good]
    mixtures: dict[int, PsfMixture | None] = {}

    def lookup(x: float, y: float) -> PsfMixture | None:
        if good.size == 0:
            return None
        k = int(good[np.argmin((xs - x) ** 2 + (ys - y) ** 2)])
        if k not in mixtures:
            mix = psf_mixture_from_row(table[k])
            mixtures[k] = mix if mix.is_valid() else None
        return mixtures[k]

    return lookup


def psf_at(spec: PsfSpec | None, x: float, y: float, config: PsfFitConfig | None = None) -> PsfMixture | None:
    """The PSF mixture of a band at a position.

    Parameters
    ----------
    spec : `PsfMixture`, `astropy.table.Table` or callable
        A fixed mixture; a ``galmix_psf_fits`` table (the row of the nearest ``x, y`` among rows without
        ``psf_flag``); or a callable ``(x, y)`` returning a mixture or a kernel image (fitted here).
    x, y : `float`
        Tract position.
    config : `PsfFitConfig`, optional
        Fit of kernel images returned by a callable (default `PsfFitConfig()`).

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
        return nearest_psf(spec)(x, y)
    out = spec(x, y)
    if out is None or isinstance(out, PsfMixture):
        return out if out is None or out.is_valid() else None
    cfg = config if config is not None else PsfFitConfig()
    return fit_psf_image(np.asarray(out), cfg.n_gauss, cfg.max_iter).mixture

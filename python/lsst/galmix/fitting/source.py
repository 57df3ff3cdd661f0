"""Fitting one source (or one joint group of sources) in all bands, and writing output rows.

Errors come from the inverse Fisher matrix of all parameters at the best fit, so flux errors are
marginalised over the shape (and over the other components' fluxes). ``reff`` is reported in pixels
and arcsec; the error of ``q`` is propagated from the covariance of ``eta``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from ..models.definitions import ModelDef
from ..models.ellipse import q_pa_from_eta, shape_covariance
from ..models.psf_mixture import PsfMixture
from ..schema import (
    SOURCE_FLAGS,
    FlagSet,
    error_column,
    flag_bit,
    flag_column,
    flux_column,
    param_column,
    sky_column,
    sky_grad_column,
    summary_flag_column,
)
from .config import FitSettings
from .engine_backend import make_problem, model_stamps, run_problems
from .moments import initial_shape
from .optimize import BandInput, SceneFit, SourceSpec, nan_to_num
from .stamps import Stamp, weighted_pixels
from .timing import staged

__all__ = [
    "FLUX_NOISE_SIGMAS",
    "MAX_FLUX_RATIO",
    "MIN_Q",
    "MIN_REFF_PIX",
    "Prepared",
    "SourceOutcome",
    "band_input",
    "collapsed_size",
    "ellipse_xy_rho",
    "ellipse_xy_rho_errors",
    "extra_starts",
    "flat_shape",
    "implausible_flux",
    "initial_theta",
    "solve",
    "split_result",
    "write_flags",
    "write_row",
]

PixelToSky = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def initial_theta(
    model: ModelDef, x: float, y: float, cov: np.ndarray | None, psf_cov: np.ndarray | None, n_init: float
) -> np.ndarray:
    """Starting nonlinear parameters from (PSF-convolved) moments.

    Parameters
    ----------
    model : `ModelDef`
        The model.
    x, y : `float`
        Starting centre.
    cov : `numpy.ndarray` or `None`
        Observed covariance (pixel^2); `None` starts from a small round source.
    psf_cov : `numpy.ndarray` or `None`
        PSF covariance subtracted from ``cov``.
    n_init : `float`
        Starting Sersic index.
    """
    if cov is None or not (np.isfinite(cov).all() and np.linalg.det(cov) > 0):
        ln_r, e1, e2 = np.log(1.0), 0.0, 0.0
    else:
        ln_r, e1, e2 = initial_shape(cov, psf_cov)
    theta: list[float] = [x, y] if model.free_centroid else []
    n_ext = sum(c.has_shape for c in model.components)
    for comp in model.components:
        if comp.has_shape:
            # Bulge + disk: the disk (exponential) starts larger than the moments size and the bulge
            # smaller, so the two components start distinguishable.
            shift = 0.0 if n_ext == 1 else (0.3 if comp.sersic_n == 1.0 else -0.7)
            theta += [ln_r + shift, e1, e2]
            if comp.free_n:
                theta.append(n_init)
    return np.array(theta, dtype=float)


def extra_starts(model: ModelDef, theta0: np.ndarray) -> list[np.ndarray]:
    """Further starting points for models whose likelihood is multimodal.

    A point source plus an extended component can trade flux between the two; when the point
    dominates the moments, the extended component must start much larger than the moments suggest.
    Measured on GalSim point + Sersic scenes: starting the extended size at 2x and 6x the moments size
    and keeping the better fit finds the right solution where any single start fails on some scenes.
    Two extended components are also started with their sizes swapped. ``theta0`` may be modified in
    place (the main start); the returned list holds the other starts.
    """
    has_point = any(not c.has_shape for c in model.components)
    sizes = list(model.reff_positions)
    if has_point and sizes:
        alt = theta0.copy()
        for i in sizes:
            theta0[i] += np.log(2.0)
            alt[i] += np.log(6.0)
        return [alt]
    if len(sizes) == 2:
        # Two extended components: also try them the other way round (which one is the larger).
        alt = theta0.copy()
        alt[sizes[0]], alt[sizes[1]] = theta0[sizes[1]], theta0[sizes[0]]
        return [alt]
    return []


def band_input(stamp: Stamp | None, psf: PsfMixture | None, model_sub: np.ndarray | None = None
               ) -> BandInput | None:
    """A stamp as a fit input (`None` if the stamp or PSF is unusable).

    Parameters
    ----------
    stamp : `Stamp` or `None`
        The stamp.
    psf : `PsfMixture` or `None`
        The PSF.
    model_sub : `numpy.ndarray`, optional
        Image (stamp shape) subtracted from the data (neighbours' models).
    """
    if stamp is None or psf is None or stamp.n_pix == 0:
        return None
    image = stamp.image if model_sub is None else np.where(stamp.weight > 0, stamp.image - model_sub, 0.0)
    return BandInput(image, stamp.weight, stamp.x0, stamp.y0, psf)


@dataclass
class Prepared:
    """A fit ready to run: sources, starting parameters and band inputs.

    Attributes
    ----------
    specs : `list` [`SourceSpec`]
        Sources fitted jointly.
    theta0 : `numpy.ndarray`
        Starting nonlinear parameters.
    bands : `list` [`BandInput` or `None`]
        Inputs per band.
    flags : `list` [`FlagSet`]
        Preparation flags per source (data quality of the stamps, missing bands, failed moments). The
        fit does not change them: each `SourceOutcome` gets its own `FlagSet`, these and the fit's.
    sky : `bool`
        Fit a flat sky level per band jointly with the sources.
    sky_plane : `bool`
        With ``sky``, fit a plane per band (level and gradients) instead of a flat level.
    warm : `bool`
        ``theta0`` is a fitted solution (a refit): `make_problem`'s ``warm``.
    fluxes0 : `numpy.ndarray` or `None`
        With ``warm``, that solution's ``(n_band, n_comp)`` fluxes (`make_problem`'s ``fluxes0``).
    """

    specs: list[SourceSpec]
    theta0: np.ndarray
    bands: list[BandInput | None]
    flags: list[FlagSet]
    sky: bool = False
    sky_plane: bool = False
    warm: bool = False
    fluxes0: np.ndarray | None = None
    _models: tuple[bytes, list[np.ndarray | None]] | None = field(default=None, init=False, repr=False,
                                                                   compare=False)
    _units: tuple[bytes, list[np.ndarray | None]] | None = field(default=None, init=False, repr=False,
                                                                  compare=False)

    def keep_unit_models(self, fit: SceneFit) -> None:
        """Keep the unit-flux models the engine returned with a fit of these inputs (`SceneFit.unit_models`):
        `fitted_models` of that fit then sums them instead of drawing the models."""
        self._units = None if fit.unit_models is None else (fit.theta.tobytes(), fit.unit_models)

    def fitted_models(self, outcomes: Sequence[SourceOutcome]) -> list[np.ndarray | None]:
        """Models of fitted sources (one outcome per spec) over the stamps, per band (non-finite fluxes
        taken as zero; read-only arrays). Only the values at pixels of positive weight are meaningful.

        Of the fit kept by `keep_unit_models` they are the unit-flux models of the engine's last pass
        times the fluxes (no pass over the pixels; zero at pixels of zero weight), otherwise drawn
        (`model_stamps`). The models of the last fit asked for are kept: the sky test after a group's fit
        and the search for residual sources ask for the same fit when its stamps did not grow.
        """
        theta = np.concatenate([o.theta for o in outcomes])
        fluxes = nan_to_num(np.concatenate([o.fluxes for o in outcomes], axis=1))
        key = theta.tobytes() + fluxes.tobytes()
        if self._models is not None and self._models[0] == key:
            return self._models[1]
        if self._units is not None and self._units[0] == theta.tobytes():
            models = [None if u is None else (f @ u.reshape(len(f), -1)).reshape(u.shape[1:])
                      for f, u in zip(fluxes, self._units[1])]
        else:
            models = model_stamps(self.specs, theta, fluxes, self.bands)
        for m in models:
            if m is not None:
                m.flags.writeable = False
        self._models = (key, models)
        return models


@staged("solve")
def solve(prepared: Sequence[Prepared], settings: FitSettings, n_threads: int = 1) -> list[list[SourceOutcome]]:
    """Run prepared fits in one engine batch and split them per source.

    Parameters
    ----------
    prepared : sequence of `Prepared`
        The fits.
    settings : `FitSettings`
        Optimizer settings.
    n_threads : `int`
        Engine threads.

    Returns
    -------
    outcomes : `list` [`list` [`SourceOutcome`]]
        Per fit, one outcome per source.
    """
    results = run_problems([make_problem(p.specs, p.theta0, p.bands, settings, sky=p.sky,
                                         sky_plane=p.sky and p.sky_plane, warm=p.warm, fluxes0=p.fluxes0)
                            for p in prepared],
                           n_threads)
    for p, r in zip(prepared, results):
        p.keep_unit_models(r)
    return [split_result(p, r) for p, r in zip(prepared, results)]


@dataclass
class SourceOutcome:
    """Per-source outcome of a (joint) fit, ready to be written as a row.

    Attributes
    ----------
    spec : `SourceSpec`
        Model and fixed centre.
    theta : `numpy.ndarray`
        Nonlinear parameters.
    theta_cov : `numpy.ndarray`
        Their covariance.
    fluxes : `numpy.ndarray`
        ``(n_band, n_comp)``.
    flux_cov : `list` [`numpy.ndarray` or `None`]
        Per band ``(n_comp, n_comp)`` covariance.
    chi2 : `float`, n_pix : `int`, n_iter : `int`
        Fit statistics (shared by the sources of a joint fit).
    flags : `FlagSet`
        Flags.
    n_residual : `int`
        Point sources found in the residuals and fitted with this source (`residual_sources`).
    sky, sky_err : `numpy.ndarray` or `None`
        Per band, the sky level fitted with the source's group at the source's detection position and its
        error (`None`: no sky).
    sky_grad, sky_grad_err : `numpy.ndarray` or `None`
        With a sky plane, per band its gradients along x and y (``(n_band, 2)``) and their errors.
    """

    spec: SourceSpec
    theta: np.ndarray
    theta_cov: np.ndarray
    fluxes: np.ndarray
    flux_cov: list[np.ndarray | None]
    chi2: float
    n_pix: int
    n_iter: int
    flags: FlagSet
    n_residual: int = 0
    sky: np.ndarray | None = None
    sky_err: np.ndarray | None = None
    sky_grad: np.ndarray | None = None
    sky_grad_err: np.ndarray | None = None


def split_result(prep: Prepared, res: SceneFit) -> list[SourceOutcome]:
    """Split a (joint) fit result per source with its flags: the source's preparation flags
    (``prep.flags``, left unchanged) and the fit-outcome flags, in a new `FlagSet` per source.

    Parameters
    ----------
    prep : `Prepared`
        The fit's inputs.
    res : `SceneFit`
        Its result.
    """
    specs, bands = prep.specs, prep.bands
    n_theta = sum(s.n_theta for s in specs)
    n_comp = sum(s.n_comp for s in specs)
    used = [i for i, b in enumerate(bands) if b is not None]
    n_pix = sum(int(np.count_nonzero(b.weight)) for b in bands if b is not None)
    boxes = [(b.x0, b.y0, b.x0 + b.image.shape[1], b.y0 + b.image.shape[0]) for b in bands if b is not None]
    x_lo, y_lo = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x_hi, y_hi = max(b[2] for b in boxes), max(b[3] for b in boxes)
    size = float(np.hypot(x_hi - x_lo, y_hi - y_lo))
    ln_size_10 = np.log(10 * size)  # a size beyond 10 stamp diagonals ran away
    out = []
    a = c = 0
    for s, (spec, prep_flags) in enumerate(zip(specs, prep.flags)):
        fl = FlagSet(mask=prep_flags.mask)
        th = res.theta[a : a + spec.n_theta]
        # A fit that ran away (centre off its pixels, size far beyond them) is not a measurement.
        ran_away = False
        if spec.model.free_centroid:
            ran_away |= not (x_lo - 0.5 <= th[0] <= x_hi - 0.5 and y_lo - 0.5 <= th[1] <= y_hi - 0.5)
        for k in spec.model.reff_positions:
            ran_away |= bool(th[k] > ln_size_10)
        tcov = res.cov[a : a + spec.n_theta, a : a + spec.n_theta]
        fcov: list[np.ndarray | None] = [None] * len(bands)
        for k, b in enumerate(used):
            i0 = n_theta + k * n_comp + c
            fcov[b] = res.cov[i0 : i0 + spec.n_comp, i0 : i0 + spec.n_comp]
        fluxes = res.fluxes[:, c : c + spec.n_comp]
        fl.set("no_convergence", not res.converged and not res.failed)
        fl.set("param_at_bound", res.at_bound)
        # A source whose flux in some band has no finite error (the whole Fisher matrix singular, or this
        # source without information in a joint fit) is not a measurement: unflagged rows have errors.
        no_error = any(not np.isfinite(fc.diagonal()).all() for fc in fcov if fc is not None)
        fl.set("singular_fisher", res.singular or no_error)
        if res.unconstrained is not None:
            fl.set("shape_unconstrained", bool(res.unconstrained[a : a + spec.n_theta].any()))
        fl.set("bad_fit", res.failed or ran_away or not np.isfinite(th).all())
        fl.set("zero_flux", bool(np.nansum(fluxes) <= 0))
        fl.set("bad_size", collapsed_size(spec, th))
        fl.set("flat_shape", flat_shape(spec, th))
        fl.set("bad_flux", implausible_flux(fluxes, bands))
        out.append(SourceOutcome(spec, th, tcov, fluxes, fcov, res.chi2, n_pix, res.n_iter, fl,
                                 sky=res.sky, sky_err=res.sky_err))
        if res.sky_plane is not None and res.sky_plane_cov is not None and res.sky_origin is not None:
            # The plane's level under this source (its detection position), with its error.
            jac = np.array([1.0, spec.xy_fixed[0] - res.sky_origin[0], spec.xy_fixed[1] - res.sky_origin[1]])
            o = out[-1]
            o.sky = res.sky_plane @ jac
            o.sky_err = np.sqrt(np.einsum("i,bij,j->b", jac, res.sky_plane_cov, jac))
            o.sky_grad = res.sky_plane[:, 1:]
            o.sky_grad_err = np.sqrt(np.diagonal(res.sky_plane_cov, axis1=1, axis2=2)[:, 1:])
        a += spec.n_theta
        c += spec.n_comp
    return out


MIN_REFF_PIX = 1e-3
"""Smallest plausible ``reff`` (pixels) of an extended component (``bad_size`` below it).

A tenth of the default lower bound of ``FitSettings.reff_bounds``: even at n = 6 such a size changes
the convolved second moment by < 1e-4 of a PSF of sigma >= 1 pixel, so no data can measure it; fitted sizes that small
only come from a numerical breakdown. A good fit of an unresolved source ends at the
bound (``param_at_bound``, not fatal) and is not affected.
"""

MAX_FLUX_RATIO = 100.0
"""Largest plausible ratio of a band's fitted total flux to the data flux of the fitted pixels."""

FLUX_NOISE_SIGMAS = 5.0
"""Noise allowance (in sigma of the summed data) added to the data flux, so faint sources with a sum
near zero are not flagged."""


MIN_Q = 1e-2
"""Smallest axis ratio of an extended component whose ``reff`` is at least one pixel that is a
measurement (``flat_shape`` below it, non-fatal): a fit that flattens a resolved component to a line
(joint fits of crowded blends; faint galaxies whose shape the data do not constrain: 21% of the
medium simulated repository's rows) has not measured a shape, while its flux can still be good.
Unresolved components (stars fitted with a Sersic) leave ``q`` unconstrained and are not flagged."""


# The limits of `collapsed_size` and `flat_shape` in their parameters' units (computed once, not per fit).
_LN_MIN_REFF = np.log(MIN_REFF_PIX)
_MAX_ETA = -np.log(MIN_Q)


def flat_shape(spec: SourceSpec, theta: np.ndarray) -> bool:
    """Whether a resolved (``reff`` >= 1 pixel) extended component's axis ratio is below `MIN_Q`."""
    return any(bool(theta[k] >= 0.0 and np.hypot(theta[k + 1], theta[k + 2]) > _MAX_ETA)
               for k in spec.model.reff_positions)


def collapsed_size(spec: SourceSpec, theta: np.ndarray) -> bool:
    """Whether an extended component's size collapsed below `MIN_REFF_PIX`.

    Parameters
    ----------
    spec : `SourceSpec`
        The source's model.
    theta : `numpy.ndarray`
        Its nonlinear parameters (natural units).
    """
    return any(bool(theta[k] < _LN_MIN_REFF) for k in spec.model.reff_positions)


def implausible_flux(fluxes: np.ndarray, bands: Sequence[BandInput | None]) -> bool:
    """Whether the fitted total flux of some band is far beyond what its pixels contain.

    A band is implausible when its total flux exceeds ``MAX_FLUX_RATIO * (max(S, 0) + FLUX_NOISE_SIGMAS
    * N)``, with ``S`` the sum of the data over the fitted pixels and ``N`` the noise of that sum: at
    least 99% of the model light would then lie outside the data, which no measurement supports. Good
    fits, including sources truncated by the stamp or the image edge, keep most of their light on the
    stamp and stay orders of magnitude below. In a joint fit the comparison is with the whole blend's
    pixels, a looser bound.

    Parameters
    ----------
    fluxes : `numpy.ndarray`
        ``(n_band, n_comp)`` fitted fluxes of one source (NaN for bands without data).
    bands : sequence of `BandInput` or `None`
        The fit's inputs per band.
    """
    for f, b in zip(fluxes, bands):
        if b is None or not np.isfinite(f).all():
            continue
        image, weight = weighted_pixels(b.image, b.weight)
        data = float(image.sum())
        noise = float(np.sqrt((1.0 / weight).sum()))
        if abs(float(f.sum())) > MAX_FLUX_RATIO * (max(data, 0.0) + FLUX_NOISE_SIGMAS * noise):
            return True
    return False


def _q_err(eta: np.ndarray, cov: np.ndarray) -> float:
    e = float(np.hypot(*eta))
    q = np.exp(-e)
    if e < 1e-9:
        return float(q * np.sqrt(0.5 * (cov[0, 0] + cov[1, 1])))
    grad = -q * eta / e
    return float(np.sqrt(max(grad @ cov @ grad, 0.0)))


def ellipse_xy_rho(ln_reff: float, eta1: float, eta2: float) -> np.ndarray:
    """Half-light ellipse ``(reff_x, reff_y, rho)`` (Rubin's x/y/correlation form) of shape parameters.

    The ellipse of semi-major axis ``reff`` and axis ratio ``q`` at position angle ``pa`` has the matrix
    ``reff^2 R diag(1, q^2) R^T``; ``reff_x`` and ``reff_y`` are the square roots of its diagonal and
    ``rho`` its correlation coefficient.
    """
    m = shape_covariance(ln_reff, eta1, eta2, check=False)
    sx, sy = np.sqrt(m[0, 0]), np.sqrt(m[1, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.array([sx, sy, m[0, 1] / (sx * sy)])


def ellipse_xy_rho_errors(shape: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Errors of `ellipse_xy_rho` from the covariance of ``(ln_reff, eta1, eta2)`` (linear propagation)."""
    jac = np.empty((3, 3))
    for k in range(3):
        step = np.zeros(3)
        step[k] = 1e-6
        jac[:, k] = (ellipse_xy_rho(*(shape + step)) - ellipse_xy_rho(*(shape - step))) / 2e-6
    with np.errstate(invalid="ignore"):
        var = np.einsum("ij,jk,ik->i", jac, cov, jac)
    return np.sqrt(np.where(var >= 0, var, np.nan))


def _sky_errors(pixel_to_sky: PixelToSky, x: float, y: float, cov: np.ndarray
                ) -> tuple[float, float, float, float]:
    """``(ra, dec, raErr, decErr)`` of a centre and its pixel covariance (local Jacobian of the WCS)."""
    ra, dec = pixel_to_sky(np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0]))
    ra, dec = np.ravel(ra).astype(float), np.ravel(dec).astype(float)
    dra = (ra[1:] - ra[0] + 180.0) % 360.0 - 180.0
    jac = np.array([dra, dec[1:] - dec[0]])
    with np.errstate(invalid="ignore"):
        var = np.diag(jac @ cov @ jac.T)
    return float(ra[0]), float(dec[0]), float(np.sqrt(var[0])), float(np.sqrt(var[1]))


def write_row(
    table: Table | dict[str, np.ndarray],
    row: int,
    outcome: SourceOutcome,
    bands: Sequence[str],
    pixel_scale: float,
    pixel_to_sky: PixelToSky | None,
) -> None:
    """Write the values of one source's outcome into a ``galmix_<Model>_patch`` table row.

    The flag columns are not written here: a row's flags come from several stages (inputs, fit,
    plausibility) and are written once, merged, by `write_flags`.

    Parameters
    ----------
    table : `astropy.table.Table`
        Table made by `lsst.galmix.schema.empty_source_table` (or its columns as arrays).
    row : `int`
        Row index.
    outcome : `SourceOutcome`
        The fit.
    bands : sequence of `str`
        Band names, in the order of ``outcome.fluxes``.
    pixel_scale : `float`
        Arcsec per pixel.
    pixel_to_sky : callable or `None`
        ``(x, y) -> (ra, dec)`` in degrees, vectorised; `None` leaves ra/dec NaN.
    """
    m = outcome.spec.model
    th, tcov = outcome.theta, outcome.theta_cov
    for b, band in enumerate(bands):
        f = outcome.fluxes[b]
        cov = outcome.flux_cov[b]
        if not np.isfinite(f).all():
            continue
        table[flux_column(m, band)][row] = f.sum()
        table[error_column(flux_column(m, band))][row] = np.sqrt(cov.sum()) if cov is not None else np.nan
        if m.multi:
            for j, comp in enumerate(m.components):
                table[flux_column(m, band, comp)][row] = f[j]
                table[error_column(flux_column(m, band, comp))][row] = (
                    np.sqrt(cov[j, j]) if cov is not None else np.nan)
    i = 0
    if m.free_centroid:
        x, y = th[0], th[1]
        xy_cov = tcov[:2, :2]
        table[error_column(param_column(m, "x"))][row] = np.sqrt(tcov[0, 0])
        table[error_column(param_column(m, "y"))][row] = np.sqrt(tcov[1, 1])
        i = 2
    else:
        x, y = outcome.spec.xy_fixed
        xy_cov = np.full((2, 2), np.nan)
    table[param_column(m, "x")][row], table[param_column(m, "y")][row] = x, y
    if pixel_to_sky is not None:
        ra, dec, ra_err, dec_err = _sky_errors(pixel_to_sky, float(x), float(y), xy_cov)
        table[param_column(m, "ra")][row], table[param_column(m, "dec")][row] = ra, dec
        table[error_column(param_column(m, "ra"))][row] = ra_err
        table[error_column(param_column(m, "dec"))][row] = dec_err
    for comp in m.components:
        if not comp.has_shape:
            continue
        shape = np.asarray(th[i : i + 3], float)
        shape_cov = tcov[i : i + 3, i : i + 3]
        xy_rho = ellipse_xy_rho(*shape)
        xy_rho_err = ellipse_xy_rho_errors(shape, shape_cov)
        for k, key in enumerate(("reff_x", "reff_y", "rho")):
            table[param_column(m, key, comp)][row] = xy_rho[k]
            table[error_column(param_column(m, key, comp))][row] = xy_rho_err[k]
        reff = float(np.exp(th[i]))
        q, pa = q_pa_from_eta(th[i + 1], th[i + 2], check=False)
        table[param_column(m, "reff", comp)][row] = reff * pixel_scale
        table[param_column(m, "reffPix", comp)][row] = reff
        table[error_column(param_column(m, "reff", comp))][row] = reff * pixel_scale * np.sqrt(tcov[i, i])
        table[param_column(m, "q", comp)][row] = q
        table[error_column(param_column(m, "q", comp))][row] = _q_err(th[i + 1 : i + 3], tcov[i + 1 : i + 3, i + 1 : i + 3])
        table[param_column(m, "pa", comp)][row] = np.degrees(pa)
        i += 3
        if comp.free_n:
            table[param_column(m, "index", comp)][row] = th[i]
            table[error_column(param_column(m, "index", comp))][row] = np.sqrt(tcov[i, i])
            i += 1
    if outcome.sky is not None:
        assert outcome.sky_err is not None  # set together with ``sky``
        for b, band in enumerate(bands):
            table[sky_column(m, band)][row] = outcome.sky[b]
            table[error_column(sky_column(m, band))][row] = outcome.sky_err[b]
    if outcome.sky_grad is not None and outcome.sky_grad_err is not None:
        for b, band in enumerate(bands):
            for a, axis in enumerate(("x", "y")):
                table[sky_grad_column(m, band, axis)][row] = outcome.sky_grad[b, a]
                table[error_column(sky_grad_column(m, band, axis))][row] = outcome.sky_grad_err[b, a]
    table[param_column(m, "chisq_reduced")][row] = outcome.chi2 / max(outcome.n_pix, 1)
    table[param_column(m, "n_pix")][row] = outcome.n_pix
    table[param_column(m, "n_iter")][row] = outcome.n_iter
    table[param_column(m, "n_eval_jac")][row] = outcome.n_iter
    table[param_column(m, "n_residual_sources")][row] = outcome.n_residual


def write_flags(table: Table | dict[str, np.ndarray], model_name: str, masks: np.ndarray) -> None:
    """Set the flag columns of every row from its flag mask (`FlagSet` bits), and the summary flag where a
    fatal flag is set. Flags are only set, never cleared.

    Parameters
    ----------
    table : `astropy.table.Table` or `dict` [`str`, `numpy.ndarray`]
        Table (or its columns) with the flag columns of ``model_name``.
    model_name : `str`
        The fitted model.
    masks : `numpy.ndarray`
        One integer mask per row of the table.
    """
    masks = np.asarray(masks, dtype=np.int64)
    fatal = np.zeros(len(masks), dtype=bool)
    for flag in SOURCE_FLAGS:
        on = (masks & flag_bit(flag.name)) != 0
        table[flag_column(model_name, flag.name)][on] = True
        fatal |= on & flag.fatal
    table[summary_flag_column(model_name)][fatal] = True

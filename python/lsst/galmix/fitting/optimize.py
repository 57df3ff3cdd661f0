"""Levenberg-Marquardt with the linear fluxes projected out (variable projection), on numpy.

The nonlinear parameters (centroid, ``ln reff``, ``eta``, ``n``) are shared by all bands; for any
trial value the fluxes (one per band per component) are the exact non-negative least-squares solution,
and the Gauss-Newton step uses Kaufman's projected Jacobian. The reported fluxes are the unconstrained
least-squares solution at the best-fit shape. Bounded parameters (``n``, ``ln reff``)
are kept in their box by projecting each trial point onto it (parameters at a bound that the
gradient pushes outward are held for that step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from ..models.definitions import N_MAX, N_MIN, ModelDef
from ..models.psf_mixture import PsfMixture
from ..models.render import component_gaussians, evaluate_gaussians, gaussians_with_jacobian
from .errors import conditional_covariance

__all__ = [
    "BandData", "BandInput", "FitResult", "FitSettings", "ParameterBounds", "Priors", "SourceSpec", "fit_model",
    "invert_fisher",
]


@dataclass
class BandInput:
    """One band's stamp for a fit.

    Attributes
    ----------
    image : `numpy.ndarray`
        Data (neighbours' models already subtracted), zero where the weight is zero.
    weight : `numpy.ndarray`
        Inverse variance (0 = excluded).
    x0, y0 : `int`
        Absolute coordinates of ``image[0, 0]``.
    psf : `PsfMixture`
        PSF of the band.
    """

    image: np.ndarray
    weight: np.ndarray
    x0: int
    y0: int
    psf: PsfMixture


@dataclass
class BandData:
    """Usable pixels of one band (zero-weight pixels already dropped).

    Attributes
    ----------
    xs, ys : `numpy.ndarray`
        Absolute pixel-centre coordinates.
    data : `numpy.ndarray`
        Pixel values (with any neighbours' models already subtracted).
    sqrtw : `numpy.ndarray`
        Square root of the inverse variance.
    psf : `PsfMixture`
        PSF of the band at the object.
    """

    xs: np.ndarray
    ys: np.ndarray
    data: np.ndarray
    sqrtw: np.ndarray
    psf: PsfMixture


@dataclass
class Priors:
    """Optional Gaussian priors (None = no prior). Defaults: none; the fit is pure maximum likelihood.

    Attributes
    ----------
    ln_reff : `tuple` [`float`, `float`] or `None`
        Mean and sigma of ``ln reff`` (pixels).
    eta_sigma : `float` or `None`
        Sigma of each conformal-shear component about 0 (favours round shapes).
    n : `tuple` [`float`, `float`] or `None`
        Mean and sigma of the Sersic index.
    """

    ln_reff: tuple[float, float] | None = None
    eta_sigma: float | None = None
    n: tuple[float, float] | None = None


@dataclass
class FitSettings:
    """Optimizer settings.

    Attributes
    ----------
    max_iter : `int`
        Maximum number of accepted-or-rejected LM steps.
    rtol : `float`
        Convergence: relative chi-square decrease of an accepted step below this.
    xtol : `float`
        Convergence (engine backend): every parameter's accepted step below ``xtol`` times its
        (conditional) error, scaled by the residual level.
    n_bounds : `tuple` [`float`, `float`]
        Bounds of the Sersic index.
    reff_bounds : `tuple` [`float`, `float`]
        Bounds of ``reff`` in pixels.
    priors : `Priors`
        Priors.
    centroid_max_shift : `float` or `None`
        Engine backend: a free centre stays within this many times ``max(PSF FWHM, starting reff)`` of
        its detection position (``SourceSpec.xy_fixed``), so that a child of a blend cannot leave its
        footprint or move onto a neighbour; `None`: unbounded.
    backend : `str`
        ``"engine"`` (C++, default) or ``"numpy"`` (this module; the reference implementation).
    """

    max_iter: int = 100
    rtol: float = 1e-6
    xtol: float = 1e-4
    n_bounds: tuple[float, float] = (N_MIN, N_MAX)
    reff_bounds: tuple[float, float] = (1e-2, 1e3)
    priors: Priors = field(default_factory=Priors)
    centroid_max_shift: float | None = 2.0
    backend: str = "engine"


@dataclass
class SourceSpec:
    """One source of a (joint) fit.

    Attributes
    ----------
    model : `ModelDef`
        Its model.
    xy_fixed : `tuple` [`float`, `float`]
        Its centre when the model's centroid is fixed.
    """

    model: ModelDef
    xy_fixed: tuple[float, float]

    @property
    def n_theta(self) -> int:
        """Number of nonlinear parameters."""
        return self.model.n_nonlinear

    @property
    def n_comp(self) -> int:
        """Number of components (linear fluxes per band)."""
        return len(self.model.components)


@dataclass
class FitResult:
    """Result of one fit.

    Attributes
    ----------
    theta : `numpy.ndarray`
        Best-fit nonlinear parameters (natural units).
    fluxes : `numpy.ndarray`
        ``(n_band, n_comp)`` fluxes (NaN for bands without data).
    cov : `numpy.ndarray`
        Covariance (inverse Fisher) of ``[theta, fluxes of band 0, band 1, ...]`` (bands with data only);
        NaN when singular.
    chi2 : `float`
        Best-fit chi-square (without the prior term).
    n_iter : `int`
        Number of iterations.
    converged : `bool`
        Whether the convergence criterion was met.
    at_bound : `bool`
        Whether a bounded parameter ended within 1e-3 (relative) of a bound.
    singular : `bool`
        Whether the Fisher matrix was singular.
    failed : `bool`
        Whether the optimizer reported an error or non-finite values.
    message : `str`
        Optimizer message.
    seconds : `float`
        Wall-clock seconds of this fit (engine: measured in C++ per problem, plus the conversion of
        its result), NaN when not measured.
    unconstrained : `numpy.ndarray` or `None`
        Boolean per nonlinear parameter: unconstrained by the data and held for the errors
        (`lsst.galmix.fitting.errors.conditional_covariance`); its error is NaN.
    sky, sky_err : `numpy.ndarray` or `None`
        Per band, the fitted flat sky level (data units per pixel) and its error, marginalised over
        all other parameters (NaN for bands without data); `None` when no sky was fitted. With a sky plane,
        the level at ``sky_origin``.
    sky_plane, sky_plane_cov : `numpy.ndarray` or `None`
        With a sky plane, per band ``(level, gradient x, gradient y)`` about ``sky_origin`` (data units per
        pixel, per pixel per pixel) and their ``3 x 3`` covariance; `None` otherwise.
    sky_origin : `tuple` [`float`, `float`] or `None`
        The absolute pixel position about which the sky plane is expanded.
    """

    theta: np.ndarray
    fluxes: np.ndarray
    cov: np.ndarray
    chi2: float
    n_iter: int
    converged: bool
    at_bound: bool
    singular: bool
    failed: bool = False
    message: str = ""
    seconds: float = float("nan")
    unconstrained: np.ndarray | None = None
    sky: np.ndarray | None = None
    sky_err: np.ndarray | None = None
    sky_plane: np.ndarray | None = None
    sky_plane_cov: np.ndarray | None = None
    sky_origin: tuple[float, float] | None = None


class ParameterBounds:
    """Box bounds of the bounded parameters (``n``, ``ln reff``) of a list of nonlinear parameters.

    One definition for both backends. Enforced by projection: as in the engine, trial points are projected onto the box and a parameter at a bound whose
    gradient points outward is held for that step: a logistic map onto the real line traps
    parameters near a bound, where its derivative vanishes.
    """

    def __init__(self, names: list[str], settings: FitSettings) -> None:
        lo, hi = np.full(len(names), -np.inf), np.full(len(names), np.inf)
        # Sersic indices: not fixed at their upper bound, capped near their lower one (`covariance`).
        self.is_index = np.array([name.endswith(".n") for name in names], bool)
        for i, name in enumerate(names):
            if self.is_index[i]:
                lo[i], hi[i] = settings.n_bounds
            elif name.endswith(".ln_reff"):
                lo[i], hi[i] = np.log(settings.reff_bounds[0]), np.log(settings.reff_bounds[1])
        self.lo, self.hi = lo, hi

    def clip(self, theta: np.ndarray) -> np.ndarray:
        return np.clip(theta, self.lo, self.hi)

    def held(self, theta: np.ndarray, descent: np.ndarray) -> np.ndarray:
        """Parameters at a bound that the descent direction pushes outward."""
        return ((theta <= self.lo) & (descent <= 0)) | ((theta >= self.hi) & (descent >= 0))

    def _near(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per parameter: within 1e-3 of its bound range from its lower / upper bound."""
        finite = np.isfinite(self.lo) & np.isfinite(self.hi)
        tol = np.where(finite, 1e-3 * (self.hi - self.lo), 0.0)
        return finite & (theta - self.lo < tol), finite & (self.hi - theta < tol)

    def at_bound(self, theta: np.ndarray) -> bool:
        """Whether any bounded parameter is at a bound (the ``param_at_bound`` flag)."""
        near_lo, near_hi = self._near(theta)
        return bool((near_lo | near_hi).any())

    def fixed_for_errors(self, theta: np.ndarray) -> np.ndarray:
        """Parameters at a bound on which the errors are made conditional (`invert_fisher`).

        Where the likelihood is steep at the bound, a parameter held there is fixed: ``reff`` at its
        limits and ``n`` at 0.5 (the Gaussian, where the profile family ends and fits of flat profiles
        pile up). ``n`` at its upper bound is not: profiles with n >~ 4 differ only in their faint
        wings, the likelihood is flat there and the data leave the index free far inside the bound, so
        the marginal errors hold. Measured (doc/fitting.rst, error calibration): fixing n at 6 made the
        flux errors of n = 4 galaxies at S/N 20 10-17% too small; fixing it at 0.5 calibrated the
        ``reff`` errors of low-index galaxies (0.84 -> 0.97).
        """
        near_lo, near_hi = self._near(theta)
        return near_lo | (near_hi & ~self.is_index)

    def covariance(self, fisher: np.ndarray, theta: np.ndarray, hold: np.ndarray | None = None
                   ) -> tuple[np.ndarray, bool]:
        """Covariance of ``[theta, fluxes]`` from their Fisher matrix (``theta`` rows first).

        Parameters at a bound in `fixed_for_errors` are fixed (`invert_fisher`), and so are those in
        ``hold`` (boolean per ``theta`` or per row of ``fisher``; unconstrained parameters,
        `errors.conditional_covariance`).
        A Sersic index above its lower bound cannot move below it either: its share of the other
        parameters' variances is scaled by ``min(1, (n - n_min)^2 / var(n))``, i.e. its uncertainty is
        capped at its distance from the bound. This makes the errors continuous across the bound (fixed there, marginal from one sigma
        above it); without it the fits of small low-index galaxies just above n = 0.5 had error spreads
        of ~0.8 (doc/fitting.rst, error calibration).
        """
        npar = len(theta)
        fixed = np.zeros(len(fisher), bool)
        fixed[:npar] = self.fixed_for_errors(theta)
        if hold is not None:
            fixed[: len(hold)] |= hold
        cov, singular = invert_fisher(fisher, fixed)
        if singular:
            return cov, singular
        for i in np.flatnonzero(self.is_index & ~fixed[:npar]):
            var = cov[i, i]
            share = min(1.0, (theta[i] - self.lo[i]) ** 2 / var) if var > 0 else 1.0
            if share < 1.0:
                cov = cov - (1.0 - share) * np.outer(cov[:, i], cov[i, :]) / var
        return cov, singular


def _prior_terms(names: list[str], theta: np.ndarray, priors: Priors) -> tuple[np.ndarray, np.ndarray]:
    """Prior residuals and their derivatives with respect to natural ``theta``."""
    rows, jac = [], []
    for i, name in enumerate(names):
        key = name.split(".")[-1]
        mean_sig = None
        if key == "ln_reff" and priors.ln_reff is not None:
            mean_sig = priors.ln_reff
        elif key in ("eta1", "eta2") and priors.eta_sigma is not None:
            mean_sig = (0.0, priors.eta_sigma)
        elif key == "n" and priors.n is not None:
            mean_sig = priors.n
        if mean_sig is not None:
            rows.append((theta[i] - mean_sig[0]) / mean_sig[1])
            j = np.zeros(len(theta))
            j[i] = 1.0 / mean_sig[1]
            jac.append(j)
    return np.array(rows), np.array(jac).reshape(len(rows), len(theta))


def _solve_fluxes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return nnls(a, b, maxiter=50 * a.shape[1])[0]
    except RuntimeError:
        return np.clip(np.linalg.lstsq(a, b, rcond=None)[0], 0, None)


def _units(sources: list[SourceSpec], theta: np.ndarray, band: BandData, need_jac: bool):
    """Unit-flux images of every component of every source, and their derivatives (full theta)."""
    ev: list[tuple[np.ndarray, np.ndarray | None]] = []
    start = 0
    for src in sources:
        th = theta[start : start + src.n_theta]
        if need_jac:
            gs, dgs = gaussians_with_jacobian(src.model, th, src.xy_fixed, band.psf)
            for g, dg in zip(gs, dgs):
                val, d = evaluate_gaussians(g, band.xs, band.ys, dg)
                full = np.zeros((len(theta), band.xs.size))
                full[start : start + src.n_theta] = d
                ev.append((val, full))
        else:
            gs = component_gaussians(src.model, th, src.xy_fixed, band.psf)
            ev += [evaluate_gaussians(g, band.xs, band.ys) for g in gs]
        start += src.n_theta
    return ev


def _evaluate(sources, theta, bands, need_jac, nonnegative=True):
    """Residuals, projected Jacobian (natural theta) and fluxes (non-negative or not) for all bands."""
    res, jacs, fluxes, units, dunits = [], [], [], [], []
    for band in bands:
        ev = _units(sources, theta, band, need_jac)
        u = np.column_stack([e[0] for e in ev])
        a = u * band.sqrtw[:, None]
        b = band.data * band.sqrtw
        f = _solve_fluxes(a, b) if nonnegative else np.linalg.lstsq(a, b, rcond=None)[0]
        res.append(b - a @ f)
        fluxes.append(f)
        units.append(u)
        if need_jac:
            du = [e[1] for e in ev]
            j = -band.sqrtw[:, None] * sum(fc * d.T for fc, d in zip(f, du))
            act = f > 0 if nonnegative else np.ones(f.shape, bool)
            if act.any():
                q, _ = np.linalg.qr(a[:, act])
                j = j - q @ (q.T @ j)
            jacs.append(j)
            dunits.append(du)
    r = np.concatenate(res) if res else np.zeros(0)
    j = np.vstack(jacs) if need_jac and jacs else None
    return r, j, fluxes, units, dunits


def fit_model(
    sources: list[SourceSpec],
    theta0: np.ndarray,
    bands: list[BandData | None],
    settings: FitSettings | None = None,
) -> FitResult:
    """Fit one or several sources (jointly) to the pixels of several bands.

    Parameters
    ----------
    sources : `list` [`SourceSpec`]
        The sources; their parameters are concatenated in this order.
    theta0 : `numpy.ndarray`
        Initial nonlinear parameters of all sources (natural units; ``n`` inside its bounds).
    bands : `list` [`BandData` or `None`]
        Pixels of each band; `None` for a band without data (its fluxes are NaN).
    settings : `FitSettings`, optional
        Optimizer settings.

    Returns
    -------
    result : `FitResult`
        The best fit.
    """
    settings = settings or FitSettings()
    used = [b for b in bands if b is not None]
    if not used:
        raise ValueError("no band has data")
    names = [name for src in sources for name in src.model.nonlinear_names]
    ncomp = sum(src.n_comp for src in sources)
    bounds = ParameterBounds(names, settings)
    theta = bounds.clip(np.asarray(theta0, float))
    npar = len(theta)

    def objective(th, need_jac):
        r, j, f, _, _ = _evaluate(sources, th, used, need_jac)
        pr, pj = _prior_terms(names, th, settings.priors)
        r_all = np.concatenate([r, pr])
        if need_jac:
            j = np.vstack([j, pj])
        return r_all, j, f, float(r @ r)

    r, j, f, chi2 = objective(theta, npar > 0)
    lam, n_iter, converged = 1e-3, 0, npar == 0
    cost = float(r @ r)
    cost0 = cost
    while not converged and n_iter < settings.max_iter:
        n_iter += 1
        a = j.T @ j
        g = j.T @ r
        diag = np.maximum(np.diag(a), 1e-12 * max(np.diag(a).max(), 1e-300))
        free = ~bounds.held(theta, -g)
        step = np.zeros(npar)
        try:
            sub = np.ix_(free, free)
            step[free] = np.linalg.solve(a[sub] + lam * np.diag(diag[free]), -g[free])
        except np.linalg.LinAlgError:
            lam *= 10
            continue
        trial = bounds.clip(theta + step)
        r_new, _, _, _ = objective(trial, False)
        cost_new = float(r_new @ r_new)
        if np.isfinite(cost_new) and cost_new < cost:
            theta = trial
            decrease = cost - cost_new
            r, j, f, chi2 = objective(theta, True)
            cost = float(r @ r)
            lam = max(lam / 5, 1e-9)
            if decrease <= settings.rtol * cost + 1e-15 * cost0:
                converged = True
        else:
            lam *= 8
            # A minimum to machine precision: no step direction lowers the cost.
            if lam > 1e12 or float(np.abs(trial - theta).max()) < 1e-12:
                converged = True
    # The reported fluxes are the unconstrained linear solution at the best-fit shape (the non-negative
    # one only guided the iterations); the errors are those of the final fluxes.
    cov, singular, held, f, chi2 = _covariance(sources, names, theta, used, settings.priors, bounds)
    fluxes = np.full((len(bands), ncomp), np.nan)
    k = 0
    for i, b in enumerate(bands):
        if b is not None:
            fluxes[i] = f[k]
            k += 1
    return FitResult(theta, fluxes, cov, chi2, n_iter, converged, bounds.at_bound(theta), singular,
                     unconstrained=held)


def _covariance(sources, names, theta, bands, priors, bounds):
    """Covariance of ``[theta, fluxes per band]`` at the best fit with the unconstrained fluxes there.

    Returns ``(cov, singular, held, fluxes, chi2)`` (`errors.conditional_covariance`).
    """
    npar, nc = len(theta), sum(src.n_comp for src in sources)
    r, _, fl, units, dunits = _evaluate(sources, theta, bands, npar > 0, nonnegative=False)
    blocks = []
    for b, (band, f, u) in enumerate(zip(bands, fl, units)):
        rows = np.zeros((band.data.size, npar + nc * len(bands)))
        if npar:
            rows[:, :npar] = sum(fc * d.T for fc, d in zip(f, dunits[b]))
        rows[:, npar + b * nc : npar + (b + 1) * nc] = u
        blocks.append(rows * band.sqrtw[:, None])
    jac = np.vstack(blocks)
    fisher = jac.T @ jac
    _, pj = _prior_terms(names, theta, priors)
    if pj.size:
        fisher[:npar, :npar] += pj.T @ pj
    cov, singular, held = conditional_covariance(bounds, fisher, theta, names)
    return cov, singular, held, fl, float(r @ r)


def invert_fisher(fisher: np.ndarray, fixed: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Covariance from a Fisher matrix (NaN and ``True`` when it is singular).

    The matrix is scaled to unit diagonal before the condition-number test, so parameters of very
    different units (fluxes in nJy, ``ln reff``) do not look singular.

    Parameters flagged in ``fixed`` (boolean, one per row; `ParameterBounds.fixed_for_errors`) are held
    at a bound: the estimate is then the maximum of the likelihood under an active constraint, whose
    covariance is that of the other parameters with these fixed, the inverse of the Fisher matrix without
    their rows and columns. Marginalising over an index that cannot move past its bound overstates the
    other errors: with n piled up at 0.5 the ``reff`` pulls shrank to ~0.75 (doc/fitting.rst, error
    calibration). The variances of the fixed parameters are NaN (no symmetric error exists there).
    """
    if fixed is None or not np.any(fixed):
        return _invert_scaled(fisher)
    free = ~np.asarray(fixed, bool)
    cov = np.zeros(fisher.shape)
    sub, singular = _invert_scaled(fisher[np.ix_(free, free)])
    cov[np.ix_(free, free)] = sub
    cov[~free, ~free] = np.nan
    return cov, singular


def _invert_scaled(fisher: np.ndarray) -> tuple[np.ndarray, bool]:
    """The inverse of a Fisher matrix, by its unit-diagonal scaling (NaN and ``True`` if singular)."""
    try:
        scale = np.sqrt(np.diag(fisher))
        if not (np.isfinite(fisher).all() and (scale > 0).all()):
            raise np.linalg.LinAlgError
        norm = fisher / np.outer(scale, scale)
        if np.linalg.cond(norm) > 1e12:
            raise np.linalg.LinAlgError
        cov = np.linalg.inv(norm) / np.outer(scale, scale)
        return cov, False
    except np.linalg.LinAlgError:
        return np.full(fisher.shape, np.nan), True

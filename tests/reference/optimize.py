"""Reference fitter: Levenberg-Marquardt with the linear fluxes projected out (variable projection), on numpy.

The nonlinear parameters (centroid, ``ln reff``, ``eta``, ``n``) are shared by all bands; for any trial
value the fluxes (one per band per component) are the exact non-negative least-squares solution, and the
Gauss-Newton step uses Kaufman's projected Jacobian. The reported fluxes are the unconstrained
least-squares solution at the best-fit shape. Bounded parameters (``n``, ``ln reff``) are kept in their
box by projecting each trial point onto it (parameters at a bound that the gradient pushes outward are
held for that step), as in the engine (``src/optimize.cc``). The covariance is the inverse of the Fisher
matrix computed from the numpy model derivatives, post-processed by the package's
`lsst.galmix.fitting.errors.conditional_covariance` (parameters at a bound or unconstrained are held).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from lsst.galmix.engine import ParamKind
from lsst.galmix.fitting.config import FitSettings, Priors
from lsst.galmix.fitting.errors import conditional_covariance
from lsst.galmix.fitting.optimize import BandInput, ParameterBounds, SceneFit, SourceSpec
from lsst.galmix.models.psf_mixture import PsfMixture
from scipy.optimize import nnls

from .render import component_gaussians, evaluate_gaussians, gaussians_with_jacobian

__all__ = ["BandData", "band_data", "fit_model", "model_jacobian"]


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


def band_data(b: BandInput | None) -> BandData | None:
    """The pixels of a stamp with non-zero weight (`None` stays `None`)."""
    if b is None:
        return None
    use = b.weight > 0
    yy, xx = np.nonzero(use)
    return BandData((xx + b.x0).astype(float), (yy + b.y0).astype(float), b.image[use], np.sqrt(b.weight[use]),
                    b.psf)


def _prior_terms(kinds: Sequence[ParamKind], theta: np.ndarray, priors: Priors) -> tuple[np.ndarray, np.ndarray]:
    """Prior residuals and their derivatives with respect to natural ``theta``."""
    rows, jac = [], []
    for i, kind in enumerate(kinds):
        mean_sig = None
        if kind == ParamKind.LN_REFF and priors.ln_reff is not None:
            mean_sig = priors.ln_reff
        elif kind in (ParamKind.ETA1, ParamKind.ETA2) and priors.eta_sigma is not None:
            mean_sig = (0.0, priors.eta_sigma)
        elif kind == ParamKind.SERSIC_N and priors.n is not None:
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


def _units(sources: Sequence[SourceSpec], theta: np.ndarray, band: BandData, need_jac: bool):
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


def model_jacobian(
    sources: Sequence[SourceSpec], theta: np.ndarray, fluxes: np.ndarray, band: BandData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model of sources at the pixels of one band and its derivatives.

    Parameters
    ----------
    sources : sequence of `SourceSpec`
        The sources.
    theta : `numpy.ndarray`
        Their nonlinear parameters.
    fluxes : `numpy.ndarray`
        Fluxes of all their components in this band.
    band : `BandData`
        The pixels.

    Returns
    -------
    model : `numpy.ndarray`
        ``(n_pix,)`` model values.
    d_theta : `numpy.ndarray`
        ``(n_pix, n_theta)`` derivatives with respect to ``theta``.
    d_flux : `numpy.ndarray`
        ``(n_pix, n_comp)`` derivatives with respect to the fluxes (the unit-flux component images).
    """
    ev = _units(sources, np.asarray(theta, float), band, need_jac=True)
    units = np.column_stack([e[0] for e in ev])
    d_theta = sum(f * e[1].T for f, e in zip(fluxes, ev))
    return units @ fluxes, np.asarray(d_theta), units


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
    sources: Sequence[SourceSpec],
    theta0: np.ndarray,
    bands: Sequence[BandInput | None],
    settings: FitSettings | None = None,
) -> SceneFit:
    """Fit one or several sources (jointly) to the pixels of several bands.

    The inputs are those of `lsst.galmix.fitting.engine_backend.make_problem` (without a sky).

    Parameters
    ----------
    sources : sequence of `SourceSpec`
        The sources; their parameters are concatenated in this order.
    theta0 : `numpy.ndarray`
        Initial nonlinear parameters of all sources (natural units; ``n`` inside its bounds).
    bands : sequence of `BandInput` or `None`
        Stamps of each band; `None` for a band without data (its fluxes are NaN).
    settings : `FitSettings`, optional
        Optimizer settings.

    Returns
    -------
    result : `SceneFit`
        The best fit.
    """
    settings = settings or FitSettings()
    data = [band_data(b) for b in bands]
    used = [b for b in data if b is not None]
    if not used:
        raise ValueError("no band has data")
    kinds = [kind for src in sources for kind in src.model.nonlinear_kinds]
    ncomp = sum(src.n_comp for src in sources)
    bounds = ParameterBounds(kinds, settings)
    theta = np.clip(np.asarray(theta0, float), bounds.lo, bounds.hi)
    npar = len(theta)

    def objective(th, need_jac):
        r, j, f, _, _ = _evaluate(sources, th, used, need_jac)
        pr, pj = _prior_terms(kinds, th, settings.priors)
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
        # Parameters at a bound that the descent direction pushes outward are held for this step.
        free = ~(((theta <= bounds.lo) & (g >= 0)) | ((theta >= bounds.hi) & (g <= 0)))
        step = np.zeros(npar)
        try:
            sub = np.ix_(free, free)
            step[free] = np.linalg.solve(a[sub] + lam * np.diag(diag[free]), -g[free])
        except np.linalg.LinAlgError:
            lam *= 10
            continue
        trial = np.clip(theta + step, bounds.lo, bounds.hi)
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
    cov, singular, held, f, chi2 = _covariance(sources, kinds, theta, used, settings.priors, bounds)
    fluxes = np.full((len(data), ncomp), np.nan)
    k = 0
    for i, b in enumerate(data):
        if b is not None:
            fluxes[i] = f[k]
            k += 1
    return SceneFit(theta, fluxes, cov, chi2, n_iter, converged, bounds.at_bound(theta), singular,
                     unconstrained=held)


def _covariance(sources, kinds, theta, bands, priors, bounds):
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
    _, pj = _prior_terms(kinds, theta, priors)
    if pj.size:
        fisher[:npar, :npar] += pj.T @ pj
    cov, singular, held = conditional_covariance(bounds, fisher, theta, kinds)
    return cov, singular, held, fl, float(r @ r)

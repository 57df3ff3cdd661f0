"""Running fits in the C++ engine (`lsst.galmix.engine`): scenes from the model registry, batch fits.

The engine's parameter vector is, per source, ``x, y``, the shape parameters of each extended component
(``ln reff, eta1, eta2[, n]``) and then the fluxes (component-major, band-minor). This module maps it to
and from the library's layout (`lsst.galmix.fitting.optimize.FitResult`: nonlinear parameters of all
sources, then per used band the fluxes of all components) and inverts the engine's Fisher matrix.

The engine solves the fluxes with a non-negative constraint inside its iterations. The reported fluxes
are the unconstrained linear solution at the best-fit shape (negative allowed, as in Rubin's
catalogues): where the constraint was active, `_unconstrained_fluxes` takes one Newton step of the
fluxes from the engine's normal equations (exact: the model is linear in them) and the Fisher matrix
is evaluated again at the final fluxes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from .. import engine as ge
from ..models.definitions import ComponentDef, Profile
from ..models.profiles import GAUSS_SIZE, profile_mixture
from ..models.psf_mixture import PsfMixture
from .errors import conditional_covariance
from .optimize import BandInput, FitResult, FitSettings, ParameterBounds, SourceSpec

__all__ = ["EngineProblem", "make_problem", "model_stamps", "psf_array", "run_problems"]


@cache
def _profile(comp: ComponentDef) -> ge.Profile | None:
    if comp.profile == Profile.POINT:
        return None
    if comp.profile == Profile.GAUSS:
        return ge.FixedProfile(np.ones(1), np.full(1, GAUSS_SIZE))
    from ..models import sersic

    if comp.sersic_n is not None:
        w, s = profile_mixture(comp)
        return ge.FixedProfile(w, s)
    spline = sersic.sersic_spline()
    return ge.SplineProfile(np.asarray(spline.breaks, float), np.asarray(spline.coeffs, float))


def psf_array(psf: PsfMixture) -> np.ndarray:
    """The engine's ``(M, 6)`` PSF layout ``(frac, dx, dy, xx, xy, yy)``."""
    return np.column_stack([psf.frac, psf.dx, psf.dy, psf.xx, psf.xy, psf.yy])


def _scene(specs: Sequence[SourceSpec], n_bands: int, sky: bool = False, sky_plane: bool = False) -> ge.Scene:
    sources = [ge.Source([ge.Component(_profile(c), c.name) for c in s.model.components]) for s in specs]
    if sky_plane:
        # The plane is expanded about the first source's detection position: its level is the sky there.
        return ge.Scene(sources, n_bands=n_bands, sky_plane=True, sky_origin=tuple(specs[0].xy_fixed))
    return ge.Scene(sources, n_bands=n_bands, sky=sky)


@dataclass
class EngineProblem:
    """A prepared engine fit and the index maps needed to read its result."""

    problem: ge.FitProblem
    scene: ge.Scene
    specs: list[SourceSpec]
    n_bands: int
    used: list[int]
    theta_index: np.ndarray
    flux_index: np.ndarray
    free: np.ndarray
    settings: FitSettings
    bands: list[ge.Band]
    sky_index: np.ndarray | None = None
    sky_grad_index: np.ndarray | None = None


def make_problem(
    specs: Sequence[SourceSpec],
    theta0: np.ndarray,
    bands: Sequence[BandInput | None],
    settings: FitSettings,
    sky: bool = False,
    sky_plane: bool = False,
) -> EngineProblem:
    """Prepare an engine fit of sources (jointly) on the usable bands.

    Parameters
    ----------
    specs : sequence of `SourceSpec`
        Sources.
    theta0 : `numpy.ndarray`
        Starting nonlinear parameters in the library layout.
    bands : sequence of `BandInput` or `None`
        Stamps per band (`None`: not used).
    settings : `FitSettings`
        Optimizer settings and priors.
    sky : `bool`
        Fit a flat sky level per band jointly with the sources (linear, either sign).
    sky_plane : `bool`
        Fit a plane per band instead (level at the first source's detection position and gradients along
        x and y, all linear).
    """
    used = [i for i, b in enumerate(bands) if b is not None]
    scene = _scene(specs, len(used), sky, sky_plane)
    params0, free, theta_index, flux_index = _layout(scene, specs, theta0, len(used))
    npar = scene.n_params
    mean, sigma = np.zeros(npar), np.full(npar, np.inf)
    names = [name for spec in specs for name in spec.model.nonlinear_names]
    bounds = ParameterBounds(names, settings)
    lower, upper = np.full(npar, -np.inf), np.full(npar, np.inf)
    lower[theta_index], upper[theta_index] = bounds.lo, bounds.hi
    pri = settings.priors
    for key, i, lo, hi in zip((name.split(".")[-1] for name in names), theta_index, bounds.lo, bounds.hi):
        if key == "ln_reff":
            margin = 1e-6 * (hi - lo)
            params0[i] = np.clip(params0[i], lo + margin, hi - margin)
        if key == "ln_reff" and pri.ln_reff is not None:
            mean[i], sigma[i] = pri.ln_reff
        elif key in ("eta1", "eta2") and pri.eta_sigma is not None:
            mean[i], sigma[i] = 0.0, pri.eta_sigma
        elif key == "n" and pri.n is not None:
            mean[i], sigma[i] = pri.n
    _bound_centroids(specs, theta0, bands, settings, scene, lower, upper)
    opts = ge.FitOptions()
    opts.max_iter = settings.max_iter
    opts.ftol = settings.rtol
    opts.xtol = settings.xtol
    opts.n_min, opts.n_max = settings.n_bounds
    opts.lower, opts.upper = lower, upper
    if np.isfinite(sigma).any():
        opts.prior_mean = mean
        opts.prior_sigma = sigma
    present = [b for b in bands if b is not None]  # the bands of ``used``, in order
    eng_bands = [ge.Band(b.image, sigma_inv=np.sqrt(b.weight), psf=psf_array(b.psf), x0=b.x0, y0=b.y0)
                 for b in present]
    problem = ge.FitProblem(scene, eng_bands, params0, free=free, options=opts)
    sky_index = np.array([scene.sky_index(k) for k in range(len(used))], int) if scene.has_sky else None
    grad_index = (np.array([[scene.sky_grad_index(k, a) for a in range(2)] for k in range(len(used))], int)
                  if scene.has_sky_plane else None)
    return EngineProblem(problem, scene, list(specs), len(bands), used, theta_index, flux_index, free, settings,
                         eng_bands, sky_index, grad_index)


def _bound_centroids(specs: Sequence[SourceSpec], theta0: np.ndarray, bands: Sequence[BandInput | None],
                     settings: FitSettings, scene: ge.Scene, lower: np.ndarray, upper: np.ndarray) -> None:
    """Box bounds of the free centres about their detection positions (`FitSettings.centroid_max_shift`)."""
    if settings.centroid_max_shift is None:
        return
    psf_sigma = max(float(np.sqrt(0.5 * np.trace(b.psf.covariance()))) for b in bands if b is not None)
    fwhm = 2.0 * np.sqrt(2.0 * np.log(2.0)) * psf_sigma
    a = 0
    for s, spec in enumerate(specs):
        names = spec.model.nonlinear_names
        if spec.model.free_centroid:
            sizes = [np.exp(theta0[a + k]) for k, name in enumerate(names) if name.endswith(".ln_reff")]
            radius = settings.centroid_max_shift * max([fwhm, *sizes])
            off = scene.source_offset(s)
            for k in range(2):
                lower[off + k] = spec.xy_fixed[k] - radius
                upper[off + k] = spec.xy_fixed[k] + radius
        a += spec.n_theta


def _layout(
    scene: ge.Scene, specs: Sequence[SourceSpec], theta: np.ndarray, n_used: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Engine parameters from library parameters: ``(params, free, theta_index, flux_index)``.

    ``params`` holds ``theta`` at ``theta_index`` (fixed centres from the specs, fluxes zero);
    ``flux_index`` lists the flux parameters band by band (used bands), source by source.
    """
    params = np.zeros(scene.n_params)
    free = np.ones(scene.n_params, bool)
    theta_index: list[int] = []
    for s, spec in enumerate(specs):
        off = scene.source_offset(s)
        if spec.model.free_centroid:
            idx = [off, off + 1]
        else:
            params[off : off + 2] = spec.xy_fixed
            free[off : off + 2] = False
            idx = []
        n_shape = sum(len(c.nonlinear_names) for c in spec.model.components)
        theta_index += idx + list(range(off + 2, off + 2 + n_shape))
    theta_index_arr = np.array(theta_index, int)
    params[theta_index_arr] = theta
    flux_index = [scene.flux_index(s, c, b) for b in range(n_used) for s, spec in enumerate(specs)
                  for c in range(spec.n_comp)]
    return params, free, theta_index_arr, np.array(flux_index, int)


def model_stamps(
    specs: Sequence[SourceSpec], theta: np.ndarray, fluxes: np.ndarray, bands: Sequence[BandInput | None]
) -> list[np.ndarray | None]:
    """Model images of sources over the stamps of the bands (C++ rendering).

    Parameters
    ----------
    specs : sequence of `SourceSpec`
        Sources.
    theta : `numpy.ndarray`
        Their nonlinear parameters (library layout, natural units).
    fluxes : `numpy.ndarray`
        ``(n_band, n_comp)`` fluxes of all their components (rows of bands without data are ignored).
    bands : sequence of `BandInput` or `None`
        Stamps (and PSFs) per band.

    Returns
    -------
    images : `list` [`numpy.ndarray` or `None`]
        Per band, the model over the stamp (`None` where the band is `None`).
    """
    used = [i for i, b in enumerate(bands) if b is not None]
    scene = _scene(specs, len(used))
    params, _, _, flux_index = _layout(scene, specs, theta, len(used))
    params[flux_index] = np.nan_to_num(np.asarray(fluxes, float)[used].ravel())
    out: list[np.ndarray | None] = [None] * len(bands)
    for k, b in enumerate(used):
        band = bands[b]
        assert band is not None  # ``used`` holds the bands with data
        image = np.zeros(band.image.shape)
        scene.image(params, k, psf_array(band.psf), image, float(band.x0), float(band.y0))
        out[b] = image
    return out


def _unconstrained_fluxes(
    p: EngineProblem, params: np.ndarray, fisher: np.ndarray, chi2: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(params, fisher, chi2)`` with the fluxes replaced by the unconstrained linear solution.

    Unchanged when no flux is at zero (the non-negative solution is then the unconstrained one). The
    fluxes of different bands share no pixels, so each band's fluxes are solved on their own block of
    the normal equations ``H df = J^T W r``.
    """
    flux = params[p.flux_index]
    if not (flux == 0.0).any() or not np.isfinite(params).all():
        return params, fisher, chi2
    try:
        _, _, h, b = p.scene.normal_equations(params, p.bands)
    except Exception:  # noqa: BLE001 - keep the engine's solution when the data are unusable
        return params, fisher, chi2
    h, b = np.asarray(h), np.asarray(b)
    new = params.copy()
    for k, idx in enumerate(p.flux_index.reshape(len(p.used), -1)):
        if p.sky_index is not None:
            # The band's sky level is linear like its fluxes: solved with them.
            idx = np.append(idx, p.sky_index[k])
        if p.sky_grad_index is not None:
            idx = np.append(idx, p.sky_grad_index[k])
        block = h[np.ix_(idx, idx)]
        step = np.linalg.lstsq(block, b[idx], rcond=None)[0]
        new[idx] = params[idx] + step
    if not np.isfinite(new).all():
        return params, fisher, chi2
    chi2_new, _, h_new, _ = p.scene.normal_equations(new, p.bands)
    return new, np.asarray(h_new), float(chi2_new)


def _result(p: EngineProblem, res: ge.FitResult) -> FitResult:
    status = int(res.status)
    failed = status in (int(ge.FitStatus.NON_FINITE), int(ge.FitStatus.ERROR))
    params, fisher, chi2 = np.asarray(res.params), np.asarray(res.fisher), float(res.chi2)
    if not failed:
        params, fisher, chi2 = _unconstrained_fluxes(p, params, fisher, chi2)
    theta = params[p.theta_index]
    ncomp = sum(s.n_comp for s in p.specs)
    fluxes = np.full((p.n_bands, ncomp), np.nan)
    fl = params[p.flux_index].reshape(len(p.used), ncomp)
    for k, b in enumerate(p.used):
        fluxes[b] = fl[k]
    fisher = fisher + np.diag(np.asarray(res.prior_precision))
    order = np.concatenate([p.theta_index, p.flux_index])
    n_main = len(order)
    if p.sky_index is not None:
        # The sky levels enter the inversion, so every other error is marginalised over them.
        order = np.concatenate([order, p.sky_index])
        if p.sky_grad_index is not None:
            order = np.concatenate([order, p.sky_grad_index[:, 0], p.sky_grad_index[:, 1]])
    names = [name for spec in p.specs for name in spec.model.nonlinear_names]
    bounds = ParameterBounds(names, p.settings)
    cov, singular, held = conditional_covariance(bounds, fisher[np.ix_(order, order)], theta, names)
    sky = sky_err = plane = plane_cov = None
    if p.sky_index is not None:
        nu = len(p.used)
        sky, sky_err = np.full(p.n_bands, np.nan), np.full(p.n_bands, np.nan)
        sky[p.used] = params[p.sky_index]
        sky_err[p.used] = np.sqrt(np.diag(cov)[n_main : n_main + nu])
        if p.sky_grad_index is not None:
            plane, plane_cov = np.full((p.n_bands, 3), np.nan), np.full((p.n_bands, 3, 3), np.nan)
            for k, b in enumerate(p.used):
                idx = [p.sky_index[k], *p.sky_grad_index[k]]
                plane[b] = params[idx]
                rows = n_main + k + nu * np.arange(3)  # level, gradient x, gradient y of band k in ``order``
                plane_cov[b] = cov[np.ix_(rows, rows)]
        cov = cov[:n_main, :n_main]
    return FitResult(theta, fluxes, cov, chi2, int(res.n_iter),
                     converged=status == int(ge.FitStatus.CONVERGED), at_bound=bounds.at_bound(theta),
                     singular=singular, failed=failed, message=str(res.message), seconds=float(res.seconds),
                     unconstrained=held, sky=sky, sky_err=sky_err, sky_plane=plane, sky_plane_cov=plane_cov,
                     sky_origin=p.scene.sky_origin if plane is not None else None)


def run_problems(problems: Sequence[EngineProblem], n_threads: int = 1) -> list[FitResult]:
    """Fit prepared problems in one C++ loop (threads release the GIL).

    Parameters
    ----------
    problems : sequence of `EngineProblem`
        Prepared fits.
    n_threads : `int`
        Threads (``<= 0``: all cores).

    Returns
    -------
    results : `list` [`FitResult`]
        One per problem; ``seconds`` is that problem's own C++ fit time plus the conversion of its
        result (not a share of the batch).
    """
    if not problems:
        return []
    results = ge.fit_batch([p.problem for p in problems], n_threads=n_threads)
    out = []
    for p, r in zip(problems, results):
        t0 = time.perf_counter()
        res = _result(p, r)
        res.seconds += time.perf_counter() - t0
        out.append(res)
    return out

"""Running fits in the C++ engine (`lsst.galmix.engine`): scenes from the model registry, batch fits.

The engine's parameter vector is, per source, ``x, y``, the shape parameters of each extended component
(``ln reff, eta1, eta2[, n]``) and then the fluxes (component-major, band-minor); `lsst.galmix.engine.Scene`
reports the kind of each (``param_kinds``). A fit's ``theta`` (`lsst.galmix.fitting.optimize.SceneFit`)
is that vector's nonlinear part: the parameters whose kind is neither a flux nor the sky, without fixed
centres, selected here by kind (`_layout`), so that the two never disagree about an order. This module
also draws models through the scene (`model_stamps`, `render_sources`, `convolved_gaussians`) and
inverts the engine's Fisher matrix.

The engine solves the fluxes with a non-negative constraint inside its iterations. The reported fluxes
are the unconstrained linear solution at the best-fit shape (negative allowed, as in Rubin's
catalogues): where the constraint was active, `_unconstrained_fluxes` takes one Newton step of the
fluxes from the engine's normal equations (exact: the model is linear in them) and the Fisher matrix
is evaluated again at the final fluxes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from .. import engine as ge
from ..models.definitions import ComponentDef, ProfileKind
from ..models.profiles import GAUSS_SIZE, profile_mixture
from ..models.psf_mixture import FWHM_PER_SIGMA, PsfMixture
from .config import FitSettings
from .errors import conditional_covariance
from .optimize import BandInput, ParameterBounds, SceneFit, SourceSpec, nan_to_num
from .timing import stage

__all__ = [
    "EngineProblem", "band_gaussians", "convolved_gaussians", "make_problem", "model_stamps", "psf_array", "render_sources",
    "run_problems",
]


@cache
def _profile(comp: ComponentDef) -> ge.Profile | None:
    if comp.profile == ProfileKind.POINT:
        return None
    if comp.profile == ProfileKind.GAUSS:
        return ge.FixedProfile(np.ones(1), np.full(1, GAUSS_SIZE))
    from ..models import sersic

    if comp.sersic_n is not None:
        w, s = profile_mixture(comp)
        return ge.FixedProfile(w, s)
    spline = sersic.sersic_spline()
    return ge.SplineProfile(np.asarray(spline.breaks, float), np.asarray(spline.coeffs, float))


def psf_array(psf: PsfMixture) -> np.ndarray:
    """The engine's ``(M, 6)`` PSF layout ``(frac, dx, dy, xx, xy, yy)`` (read-only, kept with the mixture)."""
    return psf.engine_array()


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
    bounds: ParameterBounds | None = None
    kinds: list[ge.ParamKind] | None = None


def make_problem(
    specs: Sequence[SourceSpec],
    theta0: np.ndarray,
    bands: Sequence[BandInput | None],
    settings: FitSettings,
    sky: bool = False,
    sky_plane: bool = False,
    warm: bool = False,
    fluxes0: np.ndarray | None = None,
) -> EngineProblem:
    """Prepare an engine fit of sources (jointly) on the usable bands.

    Parameters
    ----------
    specs : sequence of `SourceSpec`
        Sources.
    theta0 : `numpy.ndarray`
        Starting nonlinear parameters (``theta`` layout: `ModelDef.nonlinear_kinds` of each source).
    bands : sequence of `BandInput` or `None`
        Stamps per band (`None`: not used).
    settings : `FitSettings`
        Optimizer settings and priors.
    sky : `bool`
        Fit a flat sky level per band jointly with the sources (linear, either sign).
    sky_plane : `bool`
        Fit a plane per band instead (level at the first source's detection position and gradients along
        x and y, all linear).
    warm : `bool`
        ``theta0`` is a fitted solution (a refit): the optimizer starts with the damping
        ``settings.warm_lambda0`` instead of the engine's default for starts from moments.
    fluxes0 : `numpy.ndarray`, optional
        ``(n_band, n_comp)`` fluxes of the fitted solution a warm start starts from (non-finite taken as
        zero): where a source has several components the engine's first pass linearises at them
        (`FitOptions.start_fluxes`) instead of solving the fluxes in a pass of its own (sources of one
        component start in one pass anyway).
    """
    used = [i for i, b in enumerate(bands) if b is not None]
    t = _template(specs, len(used), sky, sky_plane, settings)
    # A sky plane is expanded about the first source's position: its scene is this problem's own.
    scene = _scene(specs, len(used), sky, sky_plane) if t.scene is None else t.scene
    params0, free, theta_index, flux_index = _layout(scene, specs, theta0, len(used))
    if len(t.reff_index):
        params0[t.reff_index] = np.clip(params0[t.reff_index], t.reff_lo, t.reff_hi)
    lower, upper = t.lower.copy(), t.upper.copy()
    _bound_centroids(specs, theta0, bands, settings, scene, lower, upper, t.centres)
    opts = ge.FitOptions()
    opts.max_iter, opts.ftol, opts.xtol = t.max_iter, t.rtol, t.xtol
    if warm:
        opts.lambda0 = t.warm_lambda0
    if fluxes0 is not None:
        params0[flux_index] = nan_to_num(np.asarray(fluxes0, float)[used].ravel())
        opts.start_fluxes = True
    opts.n_min, opts.n_max = t.n_bounds
    opts.flux_images = True  # the fitted models come with the fit (`SceneFit.unit_models`)
    opts.lower, opts.upper = lower, upper
    if t.prior_mean is not None:
        opts.prior_mean = t.prior_mean
        opts.prior_sigma = t.prior_sigma
    present = [b for b in bands if b is not None]  # the bands of ``used``, in order
    eng_bands = [ge.Band(b.image, sigma_inv=np.sqrt(b.weight), psf=psf_array(b.psf), x0=b.x0, y0=b.y0)
                 for b in present]
    problem = ge.FitProblem(scene, eng_bands, params0, free=free, options=opts)
    return EngineProblem(problem, scene, list(specs), len(bands), used, theta_index, flux_index, free, settings,
                         eng_bands, t.sky_index, t.sky_grad_index, t.bounds, t.kinds)


def _kept_per_models[T](cache: dict[tuple, tuple[tuple, T]], specs: Sequence[SourceSpec], extra: tuple,
                        build: Callable[[], T], size: int = 256) -> T:
    """``build()``, kept in ``cache`` per model sequence of ``specs`` and ``extra`` (at most ``size``
    entries).

    Models are keyed by identity; each entry keeps its models, so an id in the key cannot be reused by
    another model while the entry lives.
    """
    key = (tuple(id(s.model) for s in specs), *extra)
    hit = cache.get(key)
    if hit is not None and all(m is s.model for m, s in zip(hit[0], specs)):
        return hit[1]
    value = build()
    if len(cache) >= size:
        cache.clear()
    cache[key] = (tuple(s.model for s in specs), value)
    return value


@dataclass(frozen=True)
class _Template:
    """What the problems of one layout (model sequence, band count, sky) and one set of settings share:
    built once (`_template`), read-only.

    ``scene`` is `None` for a sky plane (its origin is the problem's own). ``reff_index`` are the
    engine indices of the ``ln reff`` parameters, whose starts are clipped into ``[reff_lo, reff_hi]``
    (just inside their bounds); ``lower``/``upper`` the box bounds before the centroid bounds;
    ``prior_mean``/``prior_sigma`` `None` without a prior; ``centres`` the free centres
    (`_free_centres`).
    """

    scene: ge.Scene | None
    kinds: list[ge.ParamKind]
    bounds: ParameterBounds
    lower: np.ndarray
    upper: np.ndarray
    reff_index: np.ndarray
    reff_lo: np.ndarray
    reff_hi: np.ndarray
    prior_mean: np.ndarray | None
    prior_sigma: np.ndarray | None
    max_iter: int
    rtol: float
    xtol: float
    warm_lambda0: float
    n_bounds: tuple[float, float]
    sky_index: np.ndarray | None
    sky_grad_index: np.ndarray | None
    centres: tuple[tuple[int, int, tuple[int, ...]], ...]


_TEMPLATES: dict[tuple, tuple[tuple, _Template]] = {}


def _settings_key(settings: FitSettings) -> tuple:
    """The values of ``settings`` that a problem's template depends on (settings are mutable configs:
    keyed by value, never by identity)."""
    pri = settings.priors
    return (settings.max_iter, settings.rtol, settings.xtol, settings.warm_lambda0, tuple(settings.n_bounds),
            tuple(settings.reff_bounds),
            None if pri.ln_reff is None else tuple(pri.ln_reff), pri.eta_sigma,
            None if pri.n is None else tuple(pri.n))


def _template(specs: Sequence[SourceSpec], n_used: int, sky: bool, sky_plane: bool, settings: FitSettings
              ) -> _Template:
    """The shared part of the problems of these sources (kept per layout and settings: a patch's fits
    repeat a few layouts, and rebuilding the scene, bounds and priors cost as much as the rest of the
    set-up)."""
    def build() -> _Template:
        scene = _scene(specs, n_used, sky, sky_plane)
        _, _, theta_index, _ = _layout(scene, specs, np.zeros(sum(s.n_theta for s in specs)), n_used)
        t = _build_template(specs, scene, theta_index, n_used, settings)
        return dataclasses.replace(t, scene=None) if sky_plane else t

    return _kept_per_models(_TEMPLATES, specs, (n_used, sky, sky_plane, _settings_key(settings)), build)


def _build_template(specs: Sequence[SourceSpec], scene: ge.Scene, theta_index: np.ndarray, n_used: int,
                    settings: FitSettings) -> _Template:
    npar = scene.n_params
    mean, sigma = np.zeros(npar), np.full(npar, np.inf)
    kinds = _kinds(specs)
    bounds = ParameterBounds(kinds, settings)
    lower, upper = np.full(npar, -np.inf), np.full(npar, np.inf)
    lower[theta_index], upper[theta_index] = bounds.lo, bounds.hi
    pri = settings.priors
    reff_index, reff_lo, reff_hi = [], [], []
    for kind, i, lo, hi in zip(kinds, theta_index, bounds.lo, bounds.hi):
        if kind == ge.ParamKind.LN_REFF:
            margin = 1e-6 * (hi - lo)
            reff_index.append(i)
            reff_lo.append(lo + margin)
            reff_hi.append(hi - margin)
        if kind == ge.ParamKind.LN_REFF and pri.ln_reff is not None:
            mean[i], sigma[i] = pri.ln_reff
        elif kind in (ge.ParamKind.ETA1, ge.ParamKind.ETA2) and pri.eta_sigma is not None:
            mean[i], sigma[i] = 0.0, pri.eta_sigma
        elif kind == ge.ParamKind.SERSIC_N and pri.n is not None:
            mean[i], sigma[i] = pri.n
    has_prior = bool(np.isfinite(sigma).any())
    sky_index = np.array([scene.sky_index(k) for k in range(n_used)], int) if scene.has_sky else None
    grad_index = (np.array([[scene.sky_grad_index(k, a) for a in range(2)] for k in range(n_used)], int)
                  if scene.has_sky_plane else None)
    arrays = [lower, upper, mean, sigma] + [a for a in (sky_index, grad_index) if a is not None]
    for a in arrays:
        a.flags.writeable = False
    n_min, n_max = settings.n_bounds
    return _Template(scene, kinds, bounds, lower, upper,
                     np.array(reff_index, int), np.array(reff_lo, float), np.array(reff_hi, float),
                     mean if has_prior else None, sigma if has_prior else None,
                     settings.max_iter, settings.rtol, settings.xtol, settings.warm_lambda0, (n_min, n_max),
                     sky_index, grad_index,
                     _free_centres(specs, scene))


def _bound_centroids(specs: Sequence[SourceSpec], theta0: np.ndarray, bands: Sequence[BandInput | None],
                     settings: FitSettings, scene: ge.Scene, lower: np.ndarray, upper: np.ndarray,
                     centres: tuple[tuple[int, int, tuple[int, ...]], ...] | None = None) -> None:
    """Box bounds of the free centres about their detection positions (`FitSettings.centroid_max_shift`).

    ``centres``: per free centre, the source, its scene offset and the ``theta`` positions of its sizes
    (`_free_centres` of the scene, kept in the problem's template; found here when `None`).
    """
    shift = settings.centroid_max_shift
    if shift is None:
        return
    if centres is None:
        centres = _free_centres(specs, scene)
    if not centres:
        return
    psf_sigma = max(b.psf.derived("round_sigma", _round_sigma) for b in bands if b is not None)
    fwhm = FWHM_PER_SIGMA * psf_sigma
    for s, off, reff_at in centres:
        radius = shift * max([fwhm, *(np.exp(theta0[i]) for i in reff_at)])
        xy = specs[s].xy_fixed
        for k in range(2):
            lower[off + k] = xy[k] - radius
            upper[off + k] = xy[k] + radius


def _round_sigma(psf: PsfMixture) -> float:
    """The sigma of the round Gaussian with a PSF's second moment (pixels; kept with the PSF)."""
    return float(np.sqrt(0.5 * np.trace(psf.covariance())))


def _free_centres(specs: Sequence[SourceSpec], scene: ge.Scene) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """Per source with a free centre: its index, its scene offset and the ``theta`` positions of its
    ``ln reff`` parameters (`_bound_centroids`)."""
    out = []
    a = 0
    for s, spec in enumerate(specs):
        if spec.model.free_centroid:
            reff_at = tuple(a + k for k, kind in enumerate(spec.model.nonlinear_kinds) if kind == ge.ParamKind.LN_REFF)
            out.append((s, scene.source_offset(s), reff_at))
        a += spec.n_theta
    return tuple(out)


def _kinds(specs: Sequence[SourceSpec]) -> list[ge.ParamKind]:
    """Kinds of the nonlinear parameters of sources fitted together (``theta`` order)."""
    return [kind for spec in specs for kind in spec.model.nonlinear_kinds]


_LINEAR = (int(ge.ParamKind.FLUX), int(ge.ParamKind.SKY))
_CENTRE = (int(ge.ParamKind.X), int(ge.ParamKind.Y))


@dataclass(frozen=True)
class _Layout:
    """Where a scene's parameters sit: nonlinear (``theta``), fixed centres (per source, `None` when free),
    fluxes (band by band), and which are free."""

    models: tuple
    theta_index: np.ndarray
    centres: tuple
    free: np.ndarray
    flux_index: np.ndarray


_LAYOUTS: dict[tuple, _Layout] = {}
_LAYOUTS_SIZE = 256


def _scene_layout(scene: ge.Scene, specs: Sequence[SourceSpec], n_used: int) -> _Layout:
    """The parameter layout of a scene of these sources (kept per model sequence and band count: the
    scenes of a patch's fits repeat a few layouts, and reading the kinds from the engine costs more
    than the fits' own set-up)."""
    key = (tuple(id(s.model) for s in specs), n_used, scene.has_sky, scene.has_sky_plane)
    hit = _LAYOUTS.get(key)
    # The models are kept in the entry, so an id in the key cannot be reused by another model.
    if hit is not None and all(m is s.model for m, s in zip(hit.models, specs)):
        return hit
    kinds = scene.param_kinds()
    free = np.ones(scene.n_params, bool)
    theta_index: list[int] = []
    centres = []
    for s, spec in enumerate(specs):
        # A source's nonlinear parameters run from its offset to its first flux.
        start = end = scene.source_offset(s)
        while end < len(kinds) and kinds[end] not in _LINEAR:
            end += 1
        centre = None
        if not spec.model.free_centroid:
            centre = np.array([i for i in range(start, end) if kinds[i] in _CENTRE], int)
            free[centre] = False
        centres.append(centre)
        theta_index += [i for i in range(start, end) if spec.model.free_centroid or kinds[i] not in _CENTRE]
    flux_index = [scene.flux_index(s, c, b) for b in range(n_used) for s, spec in enumerate(specs)
                  for c in range(spec.n_comp)]
    layout = _Layout(tuple(s.model for s in specs), np.array(theta_index, int), tuple(centres), free,
                     np.array(flux_index, int))
    for a in (layout.free, layout.theta_index, layout.flux_index):
        a.flags.writeable = False
    if len(_LAYOUTS) >= _LAYOUTS_SIZE:
        _LAYOUTS.clear()
    _LAYOUTS[key] = layout
    return layout


def _layout(
    scene: ge.Scene, specs: Sequence[SourceSpec], theta: np.ndarray, n_used: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Engine parameters from ``theta``: ``(params, free, theta_index, flux_index)``.

    ``theta_index`` selects, source by source, the scene's parameters that are neither linear nor a fixed
    centre; ``params`` holds ``theta`` there, fixed centres from the specs and zero fluxes.
    ``flux_index`` lists the flux parameters band by band (used bands), source by source. ``free`` and
    the index arrays are shared, read-only.
    """
    layout = _scene_layout(scene, specs, n_used)
    params = np.zeros(scene.n_params)
    for spec, centre in zip(specs, layout.centres):
        if centre is not None:
            params[centre] = spec.xy_fixed
    params[layout.theta_index] = theta
    return params, layout.free, layout.theta_index, layout.flux_index


_RENDER_SCENES: dict[tuple, tuple[tuple, ge.Scene]] = {}


def _render_scene(specs: Sequence[SourceSpec], n_bands: int) -> ge.Scene:
    """A scene without sky of these sources, to draw models (kept per model sequence and band count:
    scenes are immutable, and the sky test, stamp growth and residual search of every fit draw one)."""
    return _kept_per_models(_RENDER_SCENES, specs, (n_bands,), lambda: _scene(specs, n_bands))


def _scene_params(specs: Sequence[SourceSpec], theta: np.ndarray, fluxes: np.ndarray) -> tuple[ge.Scene, np.ndarray]:
    """A scene of sources over ``len(fluxes)`` bands and its parameters (``fluxes``: ``(n_band, n_comp)``,
    non-finite fluxes drawn as zero)."""
    scene = _render_scene(specs, len(fluxes))
    params, _, _, flux_index = _layout(scene, specs, theta, len(fluxes))
    params[flux_index] = nan_to_num(np.asarray(fluxes, float).ravel())
    return scene, params


def render_sources(
    specs: Sequence[SourceSpec],
    theta: np.ndarray,
    fluxes: np.ndarray,
    psf: PsfMixture,
    shape: tuple[int, int],
    origin: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Model image of sources in one band (C++ rendering).

    Parameters
    ----------
    specs : sequence of `SourceSpec`
        Sources (fixed centres at ``xy_fixed``).
    theta : `numpy.ndarray`
        Their nonlinear parameters (``theta`` layout, natural units).
    fluxes : `numpy.ndarray`
        Fluxes of all their components in this band.
    psf : `PsfMixture`
        PSF of the band.
    shape, origin : `tuple`
        ``(ny, nx)`` of the image and the absolute ``(x, y)`` of its pixel ``[0, 0]``.

    Returns
    -------
    image : `numpy.ndarray`
        The model at the pixel centres.
    """
    scene, params = _scene_params(specs, theta, np.asarray(fluxes, float)[None, :])
    image = np.zeros(shape)
    scene.image(params, 0, psf_array(psf), image, float(origin[0]), float(origin[1]))
    return image


def convolved_gaussians(specs: Sequence[SourceSpec], theta: np.ndarray, fluxes: np.ndarray, psf: PsfMixture
                    ) -> np.ndarray:
    """The PSF-convolved Gaussians of sources in one band, as the engine draws them.

    Parameters are those of `render_sources`. Returns the ``(G, 6)`` rows ``(flux, x, y, xx, xy, yy)``
    (source, component, profile Gaussian, PSF Gaussian order); their fluxes sum to the model's.
    """
    scene, params = _scene_params(specs, theta, np.asarray(fluxes, float)[None, :])
    return np.asarray(scene.gaussians(params, 0, psf_array(psf)))


def band_gaussians(specs: Sequence[SourceSpec], theta: np.ndarray, fluxes: np.ndarray,
                   psfs: Sequence[PsfMixture]) -> list[np.ndarray]:
    """`convolved_gaussians` of several bands from one scene: per band ``k``, the Gaussians with the fluxes
    ``fluxes[k]`` (``(n_band, n_comp)``) and the PSF ``psfs[k]``."""
    scene, params = _scene_params(specs, theta, np.asarray(fluxes, float))
    return [np.asarray(scene.gaussians(params, k, psf_array(psf))) for k, psf in enumerate(psfs)]


def model_stamps(
    specs: Sequence[SourceSpec], theta: np.ndarray, fluxes: np.ndarray, bands: Sequence[BandInput | None]
) -> list[np.ndarray | None]:
    """Model images of sources over the stamps of the bands (C++ rendering).

    Parameters
    ----------
    specs : sequence of `SourceSpec`
        Sources.
    theta : `numpy.ndarray`
        Their nonlinear parameters (``theta`` layout, natural units).
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
    scene, params = _scene_params(specs, theta, np.asarray(fluxes, float)[used])
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


def _result(p: EngineProblem, res: ge.FitResult) -> SceneFit:
    status = int(res.status)
    failed = status in (int(ge.FitStatus.NON_FINITE), int(ge.FitStatus.ERROR))
    params, fisher, chi2 = np.asarray(res.params), np.asarray(res.fisher), float(res.chi2)
    if not failed:
        params, fisher, chi2 = _unconstrained_fluxes(p, params, fisher, chi2)
    theta = params[p.theta_index]
    ncomp = sum(s.n_comp for s in p.specs)
    fluxes = np.full((p.n_bands, ncomp), np.nan)
    fluxes[p.used] = params[p.flux_index].reshape(len(p.used), ncomp)
    fisher = fisher + np.diag(np.asarray(res.prior_precision))
    order = np.concatenate([p.theta_index, p.flux_index])
    n_main = len(order)
    if p.sky_index is not None:
        # The sky levels enter the inversion, so every other error is marginalised over them.
        order = np.concatenate([order, p.sky_index])
        if p.sky_grad_index is not None:
            order = np.concatenate([order, p.sky_grad_index[:, 0], p.sky_grad_index[:, 1]])
    kinds = p.kinds if p.kinds is not None else _kinds(p.specs)
    bounds = p.bounds if p.bounds is not None else ParameterBounds(kinds, p.settings)
    cov, singular, held = conditional_covariance(bounds, fisher[order[:, None], order], theta, kinds)
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
    return SceneFit(theta, fluxes, cov, chi2, int(res.n_iter),
                     converged=status == int(ge.FitStatus.CONVERGED), at_bound=bounds.at_bound(theta),
                     singular=singular, failed=failed, message=str(res.message), seconds=float(res.seconds),
                     unconstrained=held, sky=sky, sky_err=sky_err, sky_plane=plane, sky_plane_cov=plane_cov,
                     sky_origin=p.scene.sky_origin if plane is not None else None,
                     unit_models=None if failed else _unit_models(p, res.flux_images, ncomp))


def _unit_models(p: EngineProblem, flux_images: list, n_comp: int) -> list[np.ndarray | None] | None:
    """`SceneFit.unit_models` from the engine's ``flux_images`` (per used band: flux parameter columns and
    their unit-flux images); a free flux without an image in its band has none there (zero). `None`
    when the engine returned none, or when a flux is fixed (the engine records free fluxes only)."""
    if len(flux_images) != len(p.used) or not p.free[p.flux_index].all():
        return None
    out: list[np.ndarray | None] = [None] * p.n_bands
    for k, (b, (columns, images)) in enumerate(zip(p.used, flux_images)):
        wanted = p.flux_index.reshape(len(p.used), n_comp)[k]
        if len(columns) == n_comp and np.array_equal(columns, wanted):
            out[b] = images
            continue
        units = np.zeros((n_comp, *images.shape[1:]))
        rows = {int(c): j for j, c in enumerate(columns)}
        for comp, col in enumerate(wanted):
            if int(col) in rows:
                units[comp] = images[rows[int(col)]]
        out[b] = units
    return out


def run_problems(problems: Sequence[EngineProblem], n_threads: int = 1) -> list[SceneFit]:
    """Fit prepared problems in one C++ loop (threads release the GIL).

    Parameters
    ----------
    problems : sequence of `EngineProblem`
        Prepared fits.
    n_threads : `int`
        Threads (``<= 0``: all cores).

    Returns
    -------
    results : `list` [`SceneFit`]
        One per problem; ``seconds`` is that problem's own C++ fit time.
    """
    if not problems:
        return []
    with stage("engine"):
        results = ge.fit_batch([p.problem for p in problems], n_threads=n_threads)
    return [_result(p, r) for p, r in zip(problems, results)]

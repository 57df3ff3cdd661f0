"""Values the fitter keeps or reuses (derived PSF values, problem templates, error limits) give the same
numbers, to the bit, as computing them afresh."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.galmix.fitting import engine_backend as eb
from lsst.galmix.fitting import errors
from lsst.galmix.fitting.blend import BandImage, ObjectInput
from lsst.galmix.fitting.config import FitSettings, SourceFitConfig
from lsst.galmix.fitting.misfit import psf_half_light_radius
from lsst.galmix.fitting.moments import AdaptiveMoments, adaptive_moments
from lsst.galmix.fitting.optimize import BandInput, SourceSpec, nan_to_num
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.stages import fit_groups
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp
from lsst.galmix.models.definitions import get_model
from lsst.galmix.models.psf_mixture import PsfMixture
from lsst.galmix.schema import FlagSet


def _mixture() -> PsfMixture:
    return PsfMixture([0.5, 0.3, 0.2], [0.1, -0.2, 0.0], [0.0, 0.3, -0.1], [2.0, 5.0, 12.0], [1.5, 4.0, 11.0],
                      [0.1, -0.3, 0.5])


def _fresh_covariance(m: PsfMixture) -> np.ndarray:
    return PsfMixture(m.frac.copy(), m.dx.copy(), m.dy.copy(), m.xx.copy(), m.yy.copy(), m.xy.copy())._covariance()


def test_psf_mixture_keeps_derived_values():
    m = _mixture()
    cov, arr = m.covariance(), m.engine_array()
    assert m.covariance() is cov and m.engine_array() is arr
    assert np.array_equal(cov, _fresh_covariance(m))
    assert np.array_equal(arr, np.column_stack([m.frac, m.dx, m.dy, m.xx, m.xy, m.yy]))
    with pytest.raises(ValueError):
        cov[0, 0] = 1.0  # shared: read-only


def test_psf_mixture_assignment_drops_derived_values():
    m = _mixture()
    cov, arr = m.covariance(), m.engine_array()
    m.frac = m.frac * 0.99
    assert m.covariance() is not cov and m.engine_array() is not arr
    assert np.array_equal(m.covariance(), _fresh_covariance(m))
    assert np.array_equal(m.engine_array()[:, 0], m.frac)
    assert "_derived" not in repr(m)


def test_psf_mixture_keeps_validity_and_derived_values():
    m = _mixture()
    valid = m.is_valid()
    radius = m.derived("half_light_radius", _half_light_radius)
    assert m._derived["is_valid"] is valid and m.derived("half_light_radius", _half_light_radius) is radius
    assert radius == psf_half_light_radius(_mixture()) and valid == _mixture()._is_valid()
    # A new array gives new values: here more light in the widest Gaussian and an invalid mixture.
    m.frac = np.array([0.1, 0.2, 0.7])
    assert m.derived("half_light_radius", _half_light_radius) == psf_half_light_radius(m) > radius
    m.xx = np.array([-1.0, 5.0, 12.0])
    assert not m.is_valid()


def _half_light_radius(m: PsfMixture) -> float:
    """A value derived from a mixture, for `PsfMixture.derived` (fresh: computed by the fitting library)."""
    return psf_half_light_radius(m)


def _clear_caches() -> None:
    """Forget every kept layout, template and derived PSF value (fits after this build them afresh)."""
    eb._LAYOUTS.clear()
    eb._TEMPLATES.clear()
    eb._RENDER_SCENES.clear()
    errors._limits_of.cache_clear()


def _galaxies(n_bands: int) -> tuple[list, list, list]:
    """A few GalSim galaxies (n 0.7-4, S/N 40-400) on ``n_bands`` bands: truths, images, PSF kernels."""
    rng = np.random.default_rng(21)
    psfs = [moffat_psf(3.0 + 0.5 * b) for b in range(n_bands)]
    kernels = [psf_kernel(p, 31) for p in psfs]
    truths, images = [], []
    # Different positions: a sky plane is expanded about the object's own.
    for i, (n, reff, snr) in enumerate(((0.7, 2.0, 400.0), (1.0, 4.0, 40.0), (2.5, 3.0, 100.0), (4.0, 6.0, 200.0))):
        t = GalaxyTruth(29.2 + 0.7 * i, 30.8 - 0.6 * i, 1000.0, n=n, reff=reff, q=0.6, position_angle=0.4 * i)
        bands = []
        for p in psfs:
            clean = render_stamp([t], p, (61, 61))
            sigma = noise_sigma_for_snr(clean, snr)
            bands.append(BandImage(clean + rng.normal(0, sigma, clean.shape), np.full(clean.shape, sigma**2),
                                   None, (0, 0)))
        truths.append(t)
        images.append(bands)
    return truths, images, kernels


def _fit_values(truths, images, kernels, model: str, sky: str, fresh: bool) -> list[np.ndarray]:
    """Every number of the fits of the galaxies (parameters, covariances, fluxes, errors, chi2, flags);
    ``fresh``: caches cleared and new PSF mixtures before every fit."""
    cfg = SourceFitConfig(sky=sky)
    shared = [fit_psf_image(k, 4).mixture for k in kernels]
    values = []
    for t, bands in zip(truths, images):
        if fresh:
            _clear_caches()
        psfs = [fit_psf_image(k, 4).mixture for k in kernels] if fresh else shared
        obj = ObjectInput(t.x, t.y, None, 0, psfs, FlagSet())
        (fit,) = fit_groups(get_model(model), [[0]], {0: obj}, bands, None, cfg)
        out = fit.outcomes[0]
        values += [out.theta, out.theta_cov, out.fluxes, np.array([out.chi2, out.n_pix, out.n_iter, out.flags.mask,
                                                                   obj.flags.mask, out.n_residual])]
        values += [c for c in out.flux_cov if c is not None]
        values += [a for a in (out.sky, out.sky_err, out.sky_grad, out.sky_grad_err) if a is not None]
    return values


@pytest.mark.parametrize("model, n_bands, sky", [("sersic", 1, "auto"), ("sersic", 2, "plane"),
                                                 ("exp", 2, "flat"), ("point", 1, "none")])
def test_kept_values_fit_like_fresh_ones(model, n_bands, sky):
    truths, images, kernels = _galaxies(n_bands)
    kept = _fit_values(truths, images, kernels, model, sky, fresh=False)
    # Twice with the caches warm (the second run reuses everything the first kept), once from scratch.
    again = _fit_values(truths, images, kernels, model, sky, fresh=False)
    fresh = _fit_values(truths, images, kernels, model, sky, fresh=True)
    assert len(kept) == len(again) == len(fresh)
    for a, b, c in zip(kept, again, fresh):
        # Bit-identical, NaN included (same_nan).
        assert np.array_equal(a, b, equal_nan=True) and np.array_equal(a, c, equal_nan=True)


def test_problem_template_follows_settings_values():
    """Settings are mutable configs: a template is kept per value of the settings, not per object."""
    specs = [SourceSpec(get_model("sersic"), (10.0, 10.0))]
    band = BandInput(np.zeros((21, 21)), np.ones((21, 21)), 0, 0, _mixture())
    theta0 = np.array([10.0, 10.0, np.log(2.0), 0.1, 0.0, 2.0])
    settings = FitSettings()
    first = eb.make_problem(specs, theta0, [band], settings)
    settings.reff_bounds = [0.5, 50.0]
    settings.priors.eta_sigma = 0.3
    second = eb.make_problem(specs, theta0, [band], settings)
    _clear_caches()
    fresh = eb.make_problem(specs, theta0, [band], settings)
    assert not np.array_equal(first.bounds.lo, second.bounds.lo)
    assert np.array_equal(second.bounds.lo, fresh.bounds.lo) and np.array_equal(second.bounds.hi, fresh.bounds.hi)
    t = eb._template(specs, 1, False, False, settings)
    assert t.prior_sigma is not None and np.array_equal(t.prior_sigma[3:5], [0.3, 0.3])
    # A second problem of the same layout shares the scene and bounds.
    again = eb.make_problem(specs, theta0, [band], settings)
    assert again.scene is fresh.scene and again.bounds is fresh.bounds


@pytest.mark.parametrize("a", [np.array([1.5, -2.0, 0.0]), np.array([[1.0, np.nan], [np.inf, -np.inf]]),
                               np.array([np.nan, 3.0])])
def test_nan_to_num_equals_numpy(a):
    for kw in ({}, {"nan": np.inf}):
        got = nan_to_num(a, **kw)
        assert got is not a and np.array_equal(got, np.nan_to_num(a, **kw), equal_nan=True)
        assert got.dtype == np.nan_to_num(a, **kw).dtype


# The adaptive moments of the fit's start as they were computed with numpy, before the engine computed them
# (`lsst.galmix.engine.adaptive_second_moments`): the same operations in the same order, so the same numbers
# but for the rounding of sums and exponentials.
def _reference_moments(
    image: np.ndarray,
    weight: np.ndarray | None = None,
    x0: float = 0.0,
    y0: float = 0.0,
    guess: tuple[float, float] | None = None,
    sigma0: float = 2.0,
    max_iter: int = 30,
    fix_centroid: bool = False,
    rtol: float = 1e-3,
) -> AdaptiveMoments:
    """`adaptive_moments` as it was computed on numpy scalars (the reference of the float version)."""
    img = np.asarray(image, dtype=np.float64)
    use = np.isfinite(img) if weight is None else (np.asarray(weight) > 0) & np.isfinite(img)
    ny, nx = img.shape
    # The used pixels' coordinates, in row-major order (as a boolean index of a full mesh gives them).
    rows, cols = np.nonzero(use)
    xx = cols.astype(float)
    yy = rows.astype(float)
    val = img[use]
    if val.size == 0:
        g = guess if guess is not None else (x0, y0)
        return AdaptiveMoments(g[0], g[1], np.eye(2) * sigma0**2, 0.0, False)
    if guess is None:
        k = int(np.argmax(val))
        cx, cy = xx[k], yy[k]
    else:
        cx, cy = guess[0] - x0, guess[1] - y0
    m = np.eye(2) * sigma0**2
    ok = False
    flux = 0.0
    # Products of the offsets are recomputed only when the centroid moves (never when it is fixed).
    dx = dy = dxx = dxy = dyy = None
    for _ in range(max_iter):
        det = m[0, 0] * m[1, 1] - m[0, 1] ** 2
        if not det > 0:
            break
        if dx is None:
            dx, dy = xx - cx, yy - cy
            dxx, dxy, dyy = dx * dx, dx * dy, dy * dy
        w = np.exp((-0.5 / det) * (m[1, 1] * dxx - 2 * m[0, 1] * dxy + m[0, 0] * dyy)) * val
        s = w.sum()
        if not s > 0:
            break
        if fix_centroid:
            ncx, ncy = cx, cy
            q = np.array([[w @ dxx, w @ dxy], [w @ dxy, w @ dyy]]) / s
        else:
            ncx, ncy = cx + float(w @ dx) / s, cy + float(w @ dy) / s
            ex, ey = dx - (ncx - cx), dy - (ncy - cy)
            q = np.array([[w @ (ex * ex), w @ (ex * ey)], [w @ (ex * ey), w @ (ey * ey)]]) / s
            dx = None
        new = _reference_update(m, q)
        # Sub-pixel objects: keep the weight from collapsing below the pixel scale.
        tr, det_new = new[0, 0] + new[1, 1], new[0, 0] * new[1, 1] - new[0, 1] ** 2
        lam_min = 0.5 * tr - np.sqrt(max(0.25 * tr * tr - det_new, 0.0))
        new += np.eye(2) * max(0.0, 1.0 / 12 - lam_min)
        if not (np.isfinite(new).all() and new[0, 0] * new[1, 1] - new[0, 1] ** 2 > 0):
            break
        scale = max(abs(new[0, 0]), abs(new[1, 1]))
        done = (abs(new - m).max() <= rtol * scale and abs(ncx - cx) < rtol and abs(ncy - cy) < rtol)
        m, cx, cy = new, ncx, ncy
        # At the fixed point the weighted sum is half the flux of a Gaussian object.
        flux = 2.0 * float(s)
        if done:
            ok = True
            break
        if not (0 <= cx < nx and 0 <= cy < ny) or m[0, 0] > 4 * (nx * nx + ny * ny):
            break
    flux = 2.0 * float(val.clip(min=0).sum()) if not ok else flux
    return AdaptiveMoments(cx + x0, cy + y0, m, flux, ok)


def _reference_update(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Next weight covariance from the weighted moments ``q`` measured with weight covariance ``m``.

    For a Gaussian object of covariance ``C``, ``q = (C^-1 + m^-1)^-1``, so ``C = (q^-1 - m^-1)^-1`` in one
    step (the fixed point ``m = C`` is that of ``m <- 2 q``, reached in 2-4 iterations instead of ~10).
    When noise or a non-Gaussian profile makes that matrix non-positive, or it jumps by more than 4x,
    the plain ``2 q`` step is taken.
    """
    det_q = q[0, 0] * q[1, 1] - q[0, 1] ** 2
    det_m = m[0, 0] * m[1, 1] - m[0, 1] ** 2
    if det_q > 0 and det_m > 0:
        a = q[1, 1] / det_q - m[1, 1] / det_m
        b = -q[0, 1] / det_q + m[0, 1] / det_m
        d = q[0, 0] / det_q - m[0, 0] / det_m
        det = a * d - b * b
        if a > 0 and det > 0:
            c = np.array([[d, -b], [-b, a]]) / det
            ratio = np.trace(c) / np.trace(m)
            if 0.25 < ratio < 4.0:
                return c
    return 2.0 * q


def _moment_stamps() -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Noisy elliptical Gaussians and Sersic-like profiles: resolved, sub-pixel (the pixel floor), faint
    (no convergence), off-centre, with masked pixels."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:41, 0:41].astype(float)
    out = []
    for k in range(60):
        sx, sy, rho = rng.uniform(0.2, 6.0), rng.uniform(0.2, 6.0), rng.uniform(-0.6, 0.6)
        cx, cy = 20 + rng.uniform(-3, 3), 20 + rng.uniform(-3, 3)
        dx, dy = (xx - cx) / sx, (yy - cy) / sy
        r2 = (dx * dx - 2 * rho * dx * dy + dy * dy) / (1 - rho * rho)
        img = np.exp(-0.5 * r2) if k % 2 else np.exp(-2.0 * r2**0.25)
        noise = rng.uniform(1e-3, 0.3)
        weight = np.full(img.shape, 1.0 / noise**2)
        if k % 7 == 0:
            weight[rng.random(img.shape) < 0.1] = 0.0
        out.append((img + rng.normal(0, noise, img.shape), weight, (cx + rng.uniform(-1, 1), cy + rng.uniform(-1, 1))))
    return out


@pytest.mark.parametrize("fix_centroid", [True, False])
@pytest.mark.parametrize("rtol", [1e-2, 1e-3])
def test_adaptive_moments_equal_the_numpy_version(fix_centroid, rtol):
    # Converged: equal to 1e-10 (2e-12 measured). Not converged after max_iter (faint stamps), the rounding
    # grows over the iterations: 1e-6 (7e-9 measured). Convergence itself never differs.
    converged = 0
    for img, weight, guess in _moment_stamps():
        for kw in ({"guess": guess}, {}):
            got = adaptive_moments(img, weight, 3.0, -2.0, fix_centroid=fix_centroid and "guess" in kw, rtol=rtol, **kw)
            ref = _reference_moments(img, weight, 3.0, -2.0, fix_centroid=fix_centroid and "guess" in kw, rtol=rtol,
                                     **kw)
            assert got.ok == ref.ok
            converged += got.ok
            tol = 1e-10 if got.ok else 1e-6
            np.testing.assert_allclose([got.x, got.y, got.flux], [ref.x, ref.y, ref.flux], rtol=tol)
            np.testing.assert_allclose(got.cov, ref.cov, rtol=tol, atol=tol * np.abs(ref.cov).max())
    assert converged > 60


def test_adaptive_moments_without_usable_pixels_and_bad_shapes():
    # No finite pixel of positive weight: the start (the guess, or the origin), not converged, no flux.
    img = np.full((5, 6), np.nan)
    img[2, 3] = 1.0
    weight = np.ones((5, 6))
    weight[2, 3] = 0.0
    for guess, at in (((4.5, 1.0), (4.5, 1.0)), (None, (3.0, -2.0))):
        got = adaptive_moments(img, weight, 3.0, -2.0, guess=guess, sigma0=1.5)
        assert (got.x, got.y, got.flux, got.ok) == (*at, 0.0, False)
        assert np.array_equal(got.cov, np.eye(2) * 2.25)
    with pytest.raises(ValueError, match="shape"):
        adaptive_moments(np.ones((5, 6)), np.ones((6, 5)))

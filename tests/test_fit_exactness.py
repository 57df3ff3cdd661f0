"""Values the fitter keeps or reuses (derived PSF values, problem templates, error limits) give the same
numbers, to the bit, as computing them afresh."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.galmix.fitting import engine_backend as eb
from lsst.galmix.fitting.blend import BandImage, ObjectInput
from lsst.galmix.fitting.config import FitSettings, SourceFitConfig
from lsst.galmix.fitting.optimize import BandInput, SourceSpec
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


def _clear_caches() -> None:
    """Forget every kept layout, template and derived PSF value (fits after this build them afresh)."""
    eb._LAYOUTS.clear()
    eb._TEMPLATES.clear()
    eb._RENDER_SCENES.clear()


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
    from lsst.galmix.fitting.optimize import nan_to_num

    for kw in ({}, {"nan": np.inf}):
        got = nan_to_num(a, **kw)
        assert got is not a and np.array_equal(got, np.nan_to_num(a, **kw), equal_nan=True)
        assert got.dtype == np.nan_to_num(a, **kw).dtype

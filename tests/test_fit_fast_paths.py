"""The fit path's cheaper forms of library calls give exactly what the general calls give.

Each shortcut of the per-object Python around the engine (`lsst.galmix.fitting`) is checked against the
computation it replaces, on random inputs that include the cases the shortcut skips (edges, ties,
non-finite values, masked and low-variance pixels, several models in one layout cache).
"""

import numpy as np
import pytest
from lsst.galmix import engine as ge
from lsst.galmix.fitting import engine_backend as eb
from lsst.galmix.fitting.blend import _median_noise
from lsst.galmix.fitting.config import FitSettings
from lsst.galmix.fitting.optimize import BandInput, SourceSpec, invert_fisher
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.residual_sources import _gaussian_smooth, _local_maxima
from lsst.galmix.fitting.source import Prepared, solve
from lsst.galmix.fitting.stamps import (
    VARIANCE_FLOOR,
    background_pixels,
    weights_from_variance,
)
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, psf_kernel, render_stamp
from lsst.galmix.models.definitions import MODELS, get_model
from lsst.galmix.schema import PSF_FLAGS, SOURCE_FLAGS, FlagSet
from scipy.ndimage import gaussian_filter, maximum_filter


def test_local_maxima_match_maximum_filter() -> None:
    rng = np.random.default_rng(3)
    for k in range(500):
        shape = tuple(rng.integers(1, 14, 2))
        image = rng.normal(size=shape)
        if k % 3 == 0:
            image = np.round(image, 1)  # ties between neighbours
        if k % 7 == 0:
            image[rng.integers(0, shape[0]), rng.integers(0, shape[1])] = np.nan
        candidates = (image >= rng.normal()) & (rng.random(shape) > 0.1)
        expected = np.nonzero(candidates & (image == maximum_filter(image, size=3)))
        got = _local_maxima(image, candidates)
        assert all(np.array_equal(e, g) for e, g in zip(expected, got))


def test_gaussian_smooth_is_gaussian_filter() -> None:
    rng = np.random.default_rng(4)
    for k in range(200):
        shape = tuple(rng.integers(1, 90, 2))
        sigma = float(rng.uniform(0.3, 5.0))
        image = rng.normal(size=shape) * rng.random(shape)
        if k % 2:
            image = np.asfortranarray(image)
        assert np.array_equal(_gaussian_smooth(image, sigma),
                              gaussian_filter(image, sigma, mode="constant", truncate=4.0))


def _weights_reference(image, variance, bad):
    """The weights as computed with the median of every stamp's variance."""
    data = np.array(image, float)
    var = np.asarray(variance, float)
    bad_var = ~(np.isfinite(var) & (var > 0))
    if not bad_var.all():
        bad_var |= var < VARIANCE_FLOOR * np.median(var[~bad_var])
    good = ~(~np.isfinite(data) | bad_var | (np.zeros(data.shape, bool) if bad is None else bad))
    weight = np.zeros(data.shape)
    weight[good] = 1.0 / var[good]
    data[~good] = 0.0
    return data, weight


@pytest.mark.parametrize("case", ["constant", "varying", "tiny", "masked", "nan", "zero"])
def test_weights_from_variance_without_median(case: str) -> None:
    rng = np.random.default_rng(5)
    image = rng.normal(size=(17, 23))
    variance = np.full(image.shape, 2.5) if case == "constant" else rng.uniform(0.5, 4.0, image.shape)
    bad = None
    if case == "tiny":
        variance[3, 4] = 1e-9  # below the floor times the median: zero weight, ``bad_variance``
    elif case == "masked":
        bad = rng.random(image.shape) < 0.2
    elif case == "nan":
        image[2, 2] = np.nan
    elif case == "zero":
        variance[5, 5] = 0.0
    data, weight, flags = weights_from_variance(image, variance, bad)
    ref_data, ref_weight = _weights_reference(image, variance, bad)
    assert np.array_equal(data, ref_data) and np.array_equal(weight, ref_weight)
    assert ("bad_variance" in flags) == (case in ("tiny", "zero"))


def test_median_noise() -> None:
    rng = np.random.default_rng(6)
    for weight in (np.full((9, 9), 4.0), rng.uniform(0.1, 3.0, (9, 9)), np.where(rng.random((9, 9)) < 0.3, 0.0, 2.0)):
        assert _median_noise(weight) == float(np.median(1.0 / np.sqrt(weight[weight > 0])))


def test_background_mask() -> None:
    # The Mahalanobis test of every source, on the stamp's weighted pixels only; a source beyond the stamp
    # changes nothing, one without a finite covariance covers the whole stamp, a singular one is an error.
    centres = np.array([[10.3, 12.1], [30.0, 5.5], [-40.0, 60.0]])
    covs = [np.array([[9.0, 2.0], [2.0, 4.0]]), None, np.array([[4.0, 0.0], [0.0, 4.0]])]
    weight = np.ones((25, 40))
    weight[3, 7] = weight[20, 33] = 0.0
    x0, y0 = -3, 2
    yy, xx = np.mgrid[0:25, 0:40]
    expected = weight > 0
    for (cx, cy), c in zip(centres, covs):
        inv = np.linalg.inv(np.eye(2) * 4.0 if c is None else c)
        dx, dy = xx + x0 - cx, yy + y0 - cy
        expected &= inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy > 9.0
    far = background_pixels(weight, x0, y0, centres, covs, 3.0)
    assert far.dtype == bool and 0 < far.sum() < weight.size - 2 and np.array_equal(far, expected)
    assert np.array_equal(background_pixels(weight, x0, y0, centres[2:], covs[2:], 3.0), weight > 0)
    assert not background_pixels(weight, x0, y0, centres[:1], [np.full((2, 2), np.nan)], 3.0).any()
    with pytest.raises(ValueError, match="singular"):
        background_pixels(weight, x0, y0, centres[:1], [np.ones((2, 2))], 3.0)


def test_singular_fisher_detected() -> None:
    fisher = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-14]])
    cov, singular = invert_fisher(fisher)
    assert singular and np.isnan(cov).all()
    fisher = np.array([[4.0, 1.0], [1.0, 3.0]])
    cov, singular = invert_fisher(fisher)
    assert not singular and np.allclose(cov, np.linalg.inv(fisher))


def test_fatal_mask() -> None:
    for psf, registry in ((False, SOURCE_FLAGS), (True, PSF_FLAGS)):
        assert not FlagSet(psf=psf).fatal
        for flag in registry:
            fs = FlagSet(psf=psf)
            fs.set(flag.name)
            assert fs.fatal == flag.fatal


def _fresh_layout(scene, specs, theta, n_used):
    """The layout read from the engine's parameter kinds without any cache."""
    kinds = [int(k) for k in scene.param_kinds()]
    params, free, theta_index = np.zeros(scene.n_params), np.ones(scene.n_params, bool), []
    linear = (int(ge.ParamKind.FLUX), int(ge.ParamKind.SKY))
    for s, spec in enumerate(specs):
        start = end = scene.source_offset(s)
        while end < len(kinds) and kinds[end] not in linear:
            end += 1
        for i in range(start, end):
            if not spec.model.free_centroid and kinds[i] in (int(ge.ParamKind.X), int(ge.ParamKind.Y)):
                params[i] = spec.xy_fixed[int(kinds[i] == int(ge.ParamKind.Y))]
                free[i] = False
            else:
                theta_index.append(i)
    params[theta_index] = theta
    flux_index = [scene.flux_index(s, c, b) for b in range(n_used) for s, spec in enumerate(specs)
                  for c in range(spec.n_comp)]
    return params, free, np.array(theta_index), np.array(flux_index)


@pytest.mark.parametrize("sky", [False, True])
def test_cached_layouts(sky: bool) -> None:
    rng = np.random.default_rng(8)
    names = sorted(MODELS)
    for _ in range(3):  # the second and third rounds hit the cache
        for k in range(len(names)):
            models = [get_model(names[k]), get_model(names[(k + 3) % len(names)])]
            specs = [SourceSpec(m, tuple(rng.uniform(0, 50, 2))) for m in models]
            n_bands = int(rng.integers(1, 4))
            scene = eb._scene(specs, n_bands, sky=sky)
            theta = rng.normal(size=sum(s.n_theta for s in specs))
            got = eb._layout(scene, specs, theta, n_bands)
            for g, e in zip(got, _fresh_layout(scene, specs, theta, n_bands)):
                assert np.array_equal(g, e)


def test_band_gaussians_equal_per_band() -> None:
    from lsst.galmix.fitting.psf import fit_psf_image
    from lsst.galmix.fitting.testing import moffat_psf, psf_kernel

    psfs = [fit_psf_image(psf_kernel(moffat_psf(f), 41), 4).mixture for f in (3.0, 4.0, 5.0)]
    rng = np.random.default_rng(9)
    for name in ("sersic", "expdev", "ptsersicFixedCen"):
        spec = SourceSpec(get_model(name), (20.3, 17.8))
        theta = np.concatenate([[20.1, 18.2] if spec.model.free_centroid else [],
                                rng.normal(0.5, 0.2, spec.n_theta - 2 * spec.model.free_centroid)])
        for k, kind in enumerate(spec.model.nonlinear_kinds):
            if kind == ge.ParamKind.SERSIC_N:
                theta[k] = 2.3
        fluxes = rng.uniform(1.0, 10.0, (3, spec.n_comp))
        together = eb.band_gaussians([spec], theta, fluxes, psfs)
        for b in range(3):
            assert np.array_equal(together[b], eb.convolved_gaussians([spec], theta, fluxes[b], psfs[b]))


@pytest.mark.parametrize("model, sky", [("sersic", False), ("expdev", True), ("ptsersic", False)])
def test_fitted_models_sum_the_engines_unit_models(model: str, sky: bool) -> None:
    """`Prepared.fitted_models` of a solved fit is the fitted fluxes times the unit-flux models the engine
    wrote in its last pass: at the weighted pixels the drawn models (`model_stamps`) of the same
    parameters, also with other fluxes; None in a band without data; drawn for parameters of no fit."""
    m = get_model(model)
    psfs = [fit_psf_image(psf_kernel(moffat_psf(f), 31), 4).mixture for f in (3.0, 3.6)]
    truths = [GalaxyTruth(120.0, 215.0, 3000.0, n=1.5, reff=3.0, q=0.6, position_angle=0.4),
              GalaxyTruth(131.0, 209.0, 1500.0, n=1.0, reff=2.0, q=0.8, position_angle=1.0)]
    rng = np.random.default_rng(8)
    bands: list[BandInput | None] = [None]
    for psf in (3.0, 3.6):
        image = render_stamp(truths, moffat_psf(psf), (40, 36), (106, 195)) + rng.normal(0.0, 1.0, (40, 36))
        weight = np.ones(image.shape)
        weight[30:33, 4:20] = 0.0
        image[weight == 0] = 0.0
        bands.append(BandInput(image, weight, 106, 195, psfs[len(bands) - 1]))
    specs = [SourceSpec(m, (t.x, t.y)) for t in truths]
    theta0 = np.concatenate([_start(m, t) for t in truths])
    prep = Prepared(specs, theta0, bands, [FlagSet(), FlagSet()], sky=sky)
    outcomes = solve([prep], FitSettings())[0]
    assert prep._units is not None  # the engine returned them
    theta = np.concatenate([o.theta for o in outcomes])
    for scale in (1.0, 0.5):  # the fitted fluxes, and others (the models are linear in them)
        for o in outcomes:
            o.fluxes = o.fluxes * scale
        fluxes = np.nan_to_num(np.concatenate([o.fluxes for o in outcomes], axis=1))
        models = prep.fitted_models(outcomes)
        drawn = eb.model_stamps(specs, theta, fluxes, bands)
        assert models[0] is None and drawn[0] is None
        for band, got, ref in zip(bands[1:], models[1:], drawn[1:]):
            use = band.weight > 0
            np.testing.assert_allclose(got[use], ref[use], rtol=0, atol=1e-10 * np.abs(ref).max())
            assert not got.flags.writeable
    outcomes[0].theta = outcomes[0].theta + 0.01  # parameters of no fit: drawn
    theta = np.concatenate([o.theta for o in outcomes])
    fluxes = np.nan_to_num(np.concatenate([o.fluxes for o in outcomes], axis=1))
    for got, ref in zip(prep.fitted_models(outcomes)[1:], eb.model_stamps(specs, theta, fluxes, bands)[1:]):
        assert np.array_equal(got, ref)


def _start(m, t) -> np.ndarray:
    """Starting parameters of model ``m`` near truth ``t``: centre, then ln reff 1, round, n 1.5."""
    theta = [t.x + 0.3, t.y - 0.2]
    for comp in m.components:
        if comp.has_shape:
            theta += [1.0, 0.0, 0.0] + ([1.5] if comp.free_n else [])
    return np.array(theta)

"""Local sky: a flat level per band fitted jointly with the sources (engine scene parameter)."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix import engine as ge
from lsst.galmix.fitting.blend import ObjectInput, _sky_allowed
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.optimize import BandInput
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp
from lsst.galmix.schema import FlagSet, sky_column, source_columns

PSF = moffat_psf(4.0)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
TRUTH = GalaxyTruth(50.0, 50.0, 1000.0, n=1.5, reff=4.0, q=0.7, position_angle=0.3)
SHAPE = (101, 101)
CLEAN = render_stamp([TRUTH], PSF, SHAPE)
SIGMA = noise_sigma_for_snr(CLEAN, 100.0)
PEDESTAL = 0.5 * SIGMA


def _fit(img, **kw):
    objects = Table({"objectId": [1], "x": [TRUTH.x], "y": [TRUTH.y]})
    cfg = SourceFitConfig(residual_threshold=0.0, **kw)
    return fit_patch({"r": (img, np.full(img.shape, SIGMA**2), None)}, (0, 0), objects, None, {"r": MIX}, "sersic",
                     cfg)


def test_sky_gaussian_is_flat_and_linear():
    psf = np.array([[1.0, 0, 0, 2.0, 0, 2.0]])
    src = ge.Source([ge.Component(ge.FixedProfile(np.ones(1), np.ones(1)), "g")])
    with_sky, plain = ge.Scene([src], n_bands=2, sky=True), ge.Scene([src], n_bands=2)
    assert with_sky.n_params == plain.n_params + 2 and with_sky.has_sky and not plain.has_sky
    assert with_sky.flux_index(0, 0, 1) == plain.flux_index(0, 0, 1)
    assert with_sky.param_kinds()[with_sky.sky_index(1)] == int(ge.ParamKind.SKY)
    p = np.zeros(with_sky.n_params)
    p[:5] = [20.0, 30.0, np.log(2.0), 0.1, 0.0]
    p[with_sky.flux_index(0, 0, 1)] = 100.0
    p[with_sky.sky_index(1)] = 0.37
    a, b = np.zeros((300, 300)), np.zeros((300, 300))
    with_sky.image(p, 1, psf, a, -100.0, -100.0)
    plain.image(p[: plain.n_params], 1, psf, b, -100.0, -100.0)
    np.testing.assert_allclose(a - b, 0.37, rtol=1e-7)


@pytest.mark.parametrize("seed", range(6))
def test_fitted_sky_equals_the_pedestal_and_galaxy_is_unbiased(seed):
    rng = np.random.default_rng(seed)
    img = CLEAN + PEDESTAL + rng.normal(0, SIGMA, SHAPE)
    out = _fit(img, sky="flat")
    assert not out["sersic_flag"][0]
    sky, err = out[sky_column("sersic", "r")][0], out[sky_column("sersic", "r") + "Err"][0]
    assert 0 < err < 0.05 * SIGMA
    assert abs(sky - PEDESTAL) < 3 * err
    assert abs(out["r_sersicFlux"][0] - TRUTH.flux) < 3 * out["r_sersicFluxErr"][0]
    assert abs(out["sersic_index"][0] - TRUTH.n) < 3 * out["sersic_indexErr"][0]
    assert abs(out["sersic_reffPix"][0] - TRUTH.reff) < 3 * out["sersic_reffErr"][0] / 0.2


def test_without_sky_the_pedestal_biases_the_galaxy():
    """The test above can fail: the same pedestal, not fitted, goes into n and flux."""
    img = CLEAN + PEDESTAL + np.random.default_rng(0).normal(0, SIGMA, SHAPE)
    out = _fit(img, sky="none")
    assert np.isnan(out[sky_column("sersic", "r")][0])
    assert out["sersic_index"][0] - TRUTH.n > 3 * out["sersic_indexErr"][0]
    assert out["r_sersicFlux"][0] - TRUTH.flux > 3 * out["r_sersicFluxErr"][0]


def test_pulls_over_realisations_are_calibrated():
    pulls = {"sky": [], "n": [], "flux": []}
    for seed in range(100, 120):
        img = CLEAN + PEDESTAL + np.random.default_rng(seed).normal(0, SIGMA, SHAPE)
        out = _fit(img)  # default: sky "auto", on for this stamp
        pulls["sky"].append((out["r_sersic_sky"][0] - PEDESTAL) / out["r_sersic_skyErr"][0])
        pulls["n"].append((out["sersic_index"][0] - TRUTH.n) / out["sersic_indexErr"][0])
        pulls["flux"].append((out["r_sersicFlux"][0] - TRUTH.flux) / out["r_sersicFluxErr"][0])
    for key, p in pulls.items():
        p = np.asarray(p)
        assert abs(p.mean()) < 3 / np.sqrt(len(p)) + 0.15, key  # unbiased (0.15 sigma: mixture approximation)
        assert 0.6 < p.std() < 1.5, key


def test_multiband_sky_per_band():
    rng = np.random.default_rng(7)
    ped = {"g": -0.3 * SIGMA, "r": 0.4 * SIGMA}
    images = {b: (CLEAN * f + ped[b] + rng.normal(0, SIGMA, SHAPE), np.full(SHAPE, SIGMA**2), None)
              for b, f in (("g", 0.6), ("r", 1.0))}
    objects = Table({"objectId": [1], "x": [TRUTH.x], "y": [TRUTH.y]})
    out = fit_patch(images, (0, 0), objects, None, {"g": MIX, "r": MIX}, "sersic",
                    SourceFitConfig(residual_threshold=0.0))
    for b in ("g", "r"):
        assert abs(out[f"{b}_sersic_sky"][0] - ped[b]) < 3 * out[f"{b}_sersic_skyErr"][0]
    assert {"g_sersic_sky", "g_sersic_skyErr"} <= {c.name for c in source_columns("sersic", ["g"])}


def test_auto_sky_needs_background_pixels():
    obj = ObjectInput(50.0, 50.0, np.diag([16.0, 16.0]), 0, [MIX], FlagSet())
    big = BandInput(np.zeros(SHAPE), np.ones(SHAPE), 0, 0, MIX)
    small = BandInput(np.zeros((25, 25)), np.ones((25, 25)), 38, 38, MIX)
    cfg = SourceFitConfig()
    assert _sky_allowed([obj], [big], cfg)
    assert not _sky_allowed([obj], [small], cfg)
    assert _sky_allowed([obj], [small], SourceFitConfig(sky="flat"))
    assert not _sky_allowed([obj], [big], SourceFitConfig(sky="none"))
    assert _sky_allowed([obj], [small], SourceFitConfig(sky="plane"))
    with pytest.raises(ValueError):
        _sky_allowed([obj], [big], SourceFitConfig(sky="tilted"))


def test_auto_sky_only_where_the_residual_shows_a_pedestal():
    rng = np.random.default_rng(11)
    noise = rng.normal(0, SIGMA, SHAPE)
    assert np.isnan(_fit(CLEAN + noise)["r_sersic_sky"][0])
    assert np.isfinite(_fit(CLEAN + PEDESTAL + noise)["r_sersic_sky"][0])

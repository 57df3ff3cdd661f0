"""Bad inputs give flags, never exceptions; every object gets one row."""

import logging

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.config import FitSettings, SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.plan import MAX_POSITION, placeable
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.stamps import cut_box, cut_stamp
from lsst.galmix.fitting.testing import GalaxyTruth, make_scene, moffat_psf, psf_kernel

PSF = moffat_psf(3.0)
MIX = fit_psf_image(psf_kernel(PSF, 31), 2).mixture
ORIGIN = (1000, 2000)


@pytest.fixture(scope="module")
def scene():
    truths = [GalaxyTruth(1030.0, 2030.0, 2000.0, n=0.5, reff=3.0, q=0.7, position_angle=0.3),
              GalaxyTruth(1002.0, 2040.0, 2000.0, n=0.5, reff=3.0, q=0.7, position_angle=0.3),
              GalaxyTruth(1070.0, 2030.0, 2000.0, n=0.5, reff=3.0, q=0.7, position_angle=0.3)]
    images, objects = make_scene(truths, {"g": PSF, "r": PSF}, {"g": 0.5, "r": 1.0}, (60, 100),
                                 {"g": 0.5, "r": 0.5}, np.random.default_rng(5), ORIGIN)
    return images, objects


def _fit(images, objects, model="gauss", psfs=None, **kw):
    return fit_patch(images, ORIGIN, objects, None, psfs or {"g": MIX, "r": MIX}, model,
                     SourceFitConfig(**kw))


def _copy(images):
    return {b: (im.copy(), var.copy(), bad.copy()) for b, (im, var, bad) in images.items()}


def test_clean_scene_has_no_fatal_flags(scene):
    t = _fit(*scene)
    assert len(t) == 3 and not t["gauss_flag"].any()
    assert t["gauss_edge_flag"].tolist() == [False, True, False]
    assert np.allclose(t["r_gaussFlux"], 2000, rtol=0.05)


def test_sky_coordinates_threads_and_row_order(scene):
    images, objects = scene
    objs = Table(objects, copy=True)
    objs["objectId"] = [30, 10, 20]
    objs["parentObjectId"] = [0, 0, 0]

    def pixel_to_sky(x, y):
        return 150.0 + 1e-5 * (np.asarray(x) - 1000), 2.0 + 1e-5 * (np.asarray(y) - 2000)

    one = fit_patch(images, ORIGIN, objs, None, {"g": MIX, "r": MIX}, "gauss", SourceFitConfig(), pixel_to_sky)
    two = fit_patch(images, ORIGIN, objs, None, {"g": MIX, "r": MIX}, "gauss", SourceFitConfig(n_threads=2))
    assert list(one["objectId"]) == [30, 10, 20]
    assert np.allclose(one["gauss_ra"], 150.0 + 1e-5 * (one["gauss_x"] - 1000), rtol=0, atol=1e-12)
    assert np.allclose(one["gauss_dec"], 2.0 + 1e-5 * (one["gauss_y"] - 2000), rtol=0, atol=1e-12)
    assert np.array_equal(one["r_gaussFlux"], two["r_gaussFlux"])


def test_all_pixels_masked(scene):
    images, objects = _copy(scene[0]), scene[1]
    for b in images:
        images[b][2][:, 50:] = True
    t = _fit(images, objects)
    assert list(t["gauss_no_data_flag"]) == [False, False, True]
    assert t["gauss_flag"][2] and np.isnan(t["r_gaussFlux"][2]) and t["gauss_x"][2] == 1070.0
    assert not t["gauss_flag"][0]


def test_nan_pixels_and_zero_variance_get_zero_weight(scene):
    images, objects = _copy(scene[0]), scene[1]
    images["r"][0][28:31, 28:31] = np.nan
    images["g"][1][25:35, 25:35] = 0.0
    images["g"][1][20, 60:80] = -1.0
    t = _fit(images, objects)
    assert t["gauss_nan_pixels_flag"][0] and t["gauss_bad_variance_flag"][0]
    assert t["gauss_bad_variance_flag"][2]
    assert not t["gauss_flag"].any()
    assert np.isfinite(t["r_gaussFlux"]).all()
    # Object 0 lost its g-band core: its g flux rests on the wings and its error grows accordingly.
    assert np.allclose(t["g_gaussFlux"][1:], 1000, rtol=0.05)
    assert abs(t["g_gaussFlux"][0] - 1000) < 0.1 * 1000
    assert t["g_gaussFluxErr"][0] > 2 * t["g_gaussFluxErr"][2]


def test_missing_band_and_bad_psf_keep_other_bands(scene):
    images, objects = scene
    t = _fit({"g": None, "r": images["r"]}, objects)
    assert t["gauss_missing_band_flag"].all() and not t["gauss_flag"].any()
    assert np.isnan(t["g_gaussFlux"]).all() and np.isfinite(t["r_gaussFlux"]).all()

    def broken(x, y):
        raise RuntimeError("no PSF here")

    t = _fit(images, objects, psfs={"g": broken, "r": MIX})
    assert t["gauss_bad_psf_flag"].all() and not t["gauss_flag"].any()
    assert np.isnan(t["g_gaussFlux"]).all() and np.allclose(t["r_gaussFlux"], 2000, rtol=0.05)
    # No PSF in any band: nothing to fit.
    t = _fit(images, objects, psfs={"g": broken, "r": None})
    assert t["gauss_no_data_flag"].all() and t["gauss_flag"].all()


def test_object_off_image_and_at_edge(scene):
    images, objects = scene
    objs = Table(objects, copy=True)
    objs["x"][1] = 1000.5  # half the stamp outside the image
    objs["x"][2] = 5000.0  # far outside
    t = _fit(images, objs)
    assert t["gauss_edge_flag"][1] and not t["gauss_flag"][1] and np.isfinite(t["r_gaussFlux"][1])
    assert t["gauss_no_data_flag"][2] and t["gauss_flag"][2]


def test_no_convergence_flag(scene):
    t = _fit(*scene, settings=FitSettings(max_iter=1))
    assert t["gauss_no_convergence_flag"].all() and t["gauss_flag"].all()
    assert (t["gauss_n_iter"] == 1).all()


def test_unexpected_error_flags_the_object_only(scene, monkeypatch):
    images, objects = scene
    import lsst.galmix.fitting.blend as blend_mod

    real = blend_mod._measure_cov

    def fails_for_second(obj, *args):
        if obj.x == 1002.0:
            raise FloatingPointError("boom")
        return real(obj, *args)

    monkeypatch.setattr(blend_mod, "_measure_cov", fails_for_second)
    t = _fit(images, objects)
    assert t["gauss_unknown_flag"].tolist() == [False, True, False]
    assert t["gauss_flag"].tolist() == [False, True, False]
    assert np.isfinite(t["r_gaussFlux"][[0, 2]]).all() and np.isnan(t["r_gaussFlux"][1])

    # The same inside a blend: the blend's rows are flagged, the isolated object is fitted.
    objs = Table(objects, copy=True)
    objs["parentObjectId"] = [0, 5, 5]
    t = _fit(images, objs)
    assert t["gauss_unknown_flag"].tolist() == [False, True, True]
    assert np.isfinite(t["r_gaussFlux"][0])


def test_empty_catalogue():
    t = fit_patch({"r": (np.zeros((5, 5)), np.ones((5, 5)), None)}, (0, 0), Table({"x": [], "y": []}), None,
                  {"r": MIX}, "sersic")
    assert len(t) == 0 and "r_sersicFlux" in t.colnames


def test_nan_position_flags_the_object_and_fits_its_siblings(scene, caplog):
    images, objects = scene
    objs = Table(objects, copy=True)
    objs["objectId"] = [101, 102, 103]
    objs["parentObjectId"] = [7, 7, 0]
    objs["x"][0] = np.nan
    with caplog.at_level(logging.WARNING, logger="lsst.galmix"):
        t = _fit(images, objs)
    assert len(t) == 3 and list(t["objectId"]) == [101, 102, 103]
    assert t["gauss_bad_position_flag"][0] and t["gauss_flag"][0] and np.isnan(t["r_gaussFlux"][0])
    assert not t["gauss_flag"][1:].any() and np.allclose(t["r_gaussFlux"][1:], 2000, rtol=0.05)
    assert "101" in caplog.text and "non-finite or out-of-range catalogue position" in caplog.text
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize("far", [2e9, 1e308, -1e300])
def test_position_beyond_any_image_is_flagged_like_a_nan(scene, far):
    # A finite position no image can hold: its squared distances to the others overflow in the neighbour
    # searches (1e308 made grouping and the plausibility checks raise); it is flagged, the others fitted.
    images, objects = scene
    objs = Table(objects, copy=True)
    objs["objectId"] = [101, 102, 103]
    objs["y"][2] = far
    t = _fit(images, objs)
    assert len(t) == 3 and list(t["objectId"]) == [101, 102, 103]
    assert t["gauss_bad_position_flag"][2] and t["gauss_flag"][2] and np.isnan(t["r_gaussFlux"][2])
    assert not t["gauss_bad_position_flag"][:2].any() and np.isfinite(t["r_gaussFlux"][:2]).all()


def test_placeable_positions():
    xy = np.array([[1.0, 2.0], [np.nan, 0.0], [0.0, np.inf], [-MAX_POSITION, MAX_POSITION],
                   [0.0, 1.01 * MAX_POSITION]])
    assert placeable(xy).tolist() == [True, False, False, True, False]


def test_cut_stamp_nan_centre_names_the_position(scene):
    image, var, bad = scene[0]["r"]
    with pytest.raises(ValueError, match=r"centre .*nan.* is not finite"):
        cut_stamp(image, var, bad, ORIGIN, (np.nan, 2030.0), 10)
    with pytest.raises(ValueError, match="not finite"):
        cut_box(image, var, bad, ORIGIN, (np.nan, 2020), (1040, 2040))


@pytest.mark.parametrize("tiny", [1e-300, 1e-30, 1e-12])
def test_tiny_variance_is_bad_variance_not_a_bad_fit(scene, tiny):
    images, objects = _copy(scene[0]), scene[1]
    images["r"][1][30, 31] = tiny  # one pixel on object 0 whose weight would swamp all the others
    t = _fit(images, objects, model="sersic")
    good = _fit(scene[0], objects, model="sersic")
    assert t["sersic_bad_variance_flag"][0] and not t["sersic_flag"][0]
    assert not t["sersic_bad_fit_flag"][0] and not t["sersic_no_convergence_flag"][0]
    assert abs(t["r_sersicFlux"][0] / good["r_sersicFlux"][0] - 1) < 0.01
    # A stamp whose variance is uniformly tiny is a unit choice, not a bad pixel.
    scaled = {b: (im * 1e-6, var * 1e-12, bad) for b, (im, var, bad) in scene[0].items()}
    t = fit_patch(scaled, ORIGIN, objects, None, {"g": MIX, "r": MIX}, "gauss", SourceFitConfig())
    assert not t["gauss_bad_variance_flag"].any()

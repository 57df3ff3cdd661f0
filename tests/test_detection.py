"""Detection library on synthetic arrays: thresholds, deblending, moments, flags, empty input."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from lsst.galmix.detection import DetectionConfig, PatchImages, detect_patch
from lsst.galmix.detection.image import combine_bands, smoothed_significance
from lsst.galmix.detection.moments import measure_moments
from lsst.galmix.schema import DETECTION_FLAGS, OBJECT_ID_STRIDE, detection_flag_column, object_columns
from scipy.signal import fftconvolve

SHAPE = (120, 140)
X0, Y0 = 1000, 2000
PATCH = 7


def _kernel() -> np.ndarray:
    return galsim.Gaussian(sigma=2.0).drawImage(nx=21, ny=21, scale=1.0).array


def _images(objects, bands="gr", sigma=1.0, seed=0, planes=None):
    rng = np.random.default_rng(seed)
    images, variances = {}, {}
    for band in bands:
        image = np.zeros(SHAPE)
        for x, y, flux, size, e1 in objects:
            profile = galsim.Gaussian(sigma=size, flux=flux).shear(e1=e1, e2=0.0)
            stamp = galsim.ImageD(SHAPE[1], SHAPE[0], scale=1.0)
            profile.drawImage(image=stamp, offset=(x - (SHAPE[1] - 1) / 2 - X0, y - (SHAPE[0] - 1) / 2 - Y0))
            image += stamp.array
        images[band] = image + rng.normal(0.0, sigma, SHAPE)
        variances[band] = np.full(SHAPE, sigma**2)
    return PatchImages(
        patch=PATCH,
        x0=X0,
        y0=Y0,
        inner=(X0 + 10, X0 + 130, Y0 + 10, Y0 + 110),
        images=images,
        variances=variances,
        planes=planes or {b: {} for b in bands},
        kernel=_kernel(),
        pixel_to_sky=lambda x, y: (np.asarray(x) * 1e-3, np.asarray(y) * 1e-3),
    )


def test_isolated_sources_positions_moments_fluxes():
    objects = [(X0 + 40.3, Y0 + 50.7, 3000.0, 2.5, 0.0), (X0 + 100.0, Y0 + 70.2, 5000.0, 3.0, 0.3)]
    result = detect_patch(_images(objects))
    table = result.objects
    assert len(table) == 2
    assert list(table.colnames) == list(object_columns(["g", "r"]))
    table.sort("x")
    for row, (x, y, flux, size, e1) in zip(table, objects):
        assert row["x"] == pytest.approx(x, abs=0.1) and row["y"] == pytest.approx(y, abs=0.1)
        # Adaptive moments of an elliptical Gaussian are its covariance.
        s2 = size**2
        assert row["shape_xx"] == pytest.approx(s2 * (1 + e1) / np.sqrt(1 - e1**2), rel=0.1)
        assert row["shape_yy"] == pytest.approx(s2 * (1 - e1) / np.sqrt(1 - e1**2), rel=0.1)
        assert abs(row["shape_xy"]) < 0.1 * s2
        assert 0.8 * flux < row["g_initFlux"] < 1.05 * flux
        assert row["nChild"] == 1 and row["parentObjectId"] == 0
        assert row["objectId"] // OBJECT_ID_STRIDE == PATCH and row["patch"] == PATCH
        assert row["ra"] == pytest.approx(row["x"] * 1e-3)
        assert row["detect_isPrimary"] and not any(row[detection_flag_column(f.name)] for f in DETECTION_FLAGS)
    # Every row owns the pixels of its label, and the label image holds only row labels.
    assert set(np.unique(result.labels)) == {0} | set(table["footprintLabel"])
    ix, iy = round(table["x"][0]) - X0, round(table["y"][0]) - Y0
    assert result.labels[iy, ix] == table["footprintLabel"][0]


def test_blend_is_deblended_into_children():
    objects = [(X0 + 60.0, Y0 + 60.0, 4000.0, 2.2, 0.0), (X0 + 69.0, Y0 + 60.0, 2500.0, 2.2, 0.0)]
    table = detect_patch(_images(objects)).objects
    assert len(table) == 2
    assert np.all(table["nChild"] == 2)
    parent = table["parentObjectId"][0]
    assert parent != 0 and np.all(table["parentObjectId"] == parent)
    assert parent not in table["objectId"] and len(set(table["objectId"])) == 2
    no_deblend = detect_patch(_images(objects), DetectionConfig(deblend=False)).objects
    assert len(no_deblend) == 1 and no_deblend["nChild"][0] == 1


def test_faint_sources_below_threshold_are_not_detected():
    table = detect_patch(_images([(X0 + 60.0, Y0 + 60.0, 20.0, 2.0, 0.0)])).objects
    assert len(table) == 0
    assert list(table.colnames) == list(object_columns(["g", "r"]))


def test_masks_give_flags_and_zero_weight():
    planes = {
        b: {"NO_DATA": np.zeros(SHAPE, bool), "SAT": np.zeros(SHAPE, bool), "EDGE": np.zeros(SHAPE, bool)}
        for b in "gr"
    }
    planes["g"]["NO_DATA"][:, :20] = True
    planes["r"]["SAT"][49:52, 99:102] = True
    planes["g"]["EDGE"][:3, :] = True
    objects = [
        (X0 + 22.0, Y0 + 60.0, 4000.0, 2.5, 0.0),
        (X0 + 100.0, Y0 + 50.0, 4000.0, 2.5, 0.0),
        (X0 + 70.0, Y0 + 3.0, 4000.0, 2.5, 0.0),
    ]
    data = _images(objects, planes=planes)
    data.images["g"][:, :20] = np.nan
    table = detect_patch(data).objects
    table.sort("x")
    assert len(table) == 3
    assert table["detect_no_data_flag"][0] and not table["detect_no_data_flag"][2]
    assert table["detect_saturated_center_flag"][2] and not table["detect_saturated_center_flag"][0]
    assert table["detect_edge_flag"][1] and not table["detect_isPatchInner"][1] and not table["detect_isPrimary"][1]
    assert np.all(np.isfinite(table["g_initFlux"]))


def test_combine_bands_is_inverse_variance_mean():
    a, b = np.full((2, 2), 10.0), np.full((2, 2), 20.0)
    va, vb = np.full((2, 2), 1.0), np.full((2, 2), 4.0)
    good = np.ones((2, 2), bool)
    bad = good.copy()
    bad[0, 0] = False
    mean, var, ok = combine_bands([a, b], [va, vb], [bad, good])
    assert mean[1, 1] == pytest.approx((10 / 1 + 20 / 4) / (1 + 1 / 4))
    assert var[1, 1] == pytest.approx(1 / 1.25)
    assert mean[0, 0] == 20 and var[0, 0] == 4 and ok.all()


def test_blockwise_combination_and_smoothing_equal_whole_array_formulas():
    # More rows than one block of the band combination, NaNs, zero variances, a band-masked column.
    rng = np.random.default_rng(3)
    shape = (600, 90)
    images = [rng.normal(0.0, 1.0, shape).astype(np.float32) for _ in range(3)]
    variances = [rng.uniform(0.5, 2.0, shape).astype(np.float32) for _ in range(3)]
    images[0][5, 5] = np.nan
    variances[1][300:310] = 0.0
    goods = [np.isfinite(im) for im in images]
    goods[2][:, 40] = False
    num, den = np.zeros(shape), np.zeros(shape)
    for image, variance, good in zip(images, variances, goods, strict=True):
        ok = good & np.isfinite(image) & np.isfinite(variance) & (variance > 0)
        weight = np.where(ok, 1.0 / np.where(ok, variance, 1.0), 0.0)
        num += weight * np.where(ok, image, 0.0)
        den += weight
    good = den > 0
    mean, var, ok = combine_bands(images, variances, goods)
    np.testing.assert_array_equal(mean, np.where(good, num / np.where(good, den, 1.0), 0.0))
    np.testing.assert_array_equal(var, np.where(good, 1.0 / np.where(good, den, 1.0), np.inf))
    np.testing.assert_array_equal(ok, good)
    # The smoothing gives the values of scipy's fftconvolve, bit for bit.
    kernel = _kernel()
    usable = ok & np.isfinite(mean) & np.isfinite(var) & (var > 0)
    data, noise_in = np.where(usable, mean, 0.0), np.where(usable, var, 0.0)
    smoothed = fftconvolve(data, kernel, mode="same")
    noise = fftconvolve(noise_in, kernel**2, mode="same")
    valid = noise > 1e-6 * np.median(noise_in[usable]) * np.sum(kernel**2)
    expected = np.where(valid, smoothed / np.sqrt(np.where(valid, noise, 1.0)), 0.0)
    np.testing.assert_array_equal(smoothed_significance(mean, var, kernel, ok), expected)


def test_moments_fallback_flag():
    image = np.zeros((15, 15))
    footprint = np.zeros_like(image, dtype=bool)
    footprint[7, 7] = True
    image[7, 7] = 1.0
    moments = measure_moments(image, np.ones_like(footprint), footprint, 3, 4, 2.0)
    assert not moments.ok and moments.x == 10 and moments.y == 11


def test_object_columns_follow_conventions():
    # doc/conventions.rst, galmix_objects.
    expected = (
        ["objectId", "parentObjectId", "nChild", "footprintLabel", "patch", "x", "y", "ra", "dec"]
        + ["shape_xx", "shape_yy", "shape_xy", "g_initFlux", "i_initFlux"]
        + ["detect_isPatchInner", "detect_isPrimary"]
        + ["detect_edge_flag", "detect_no_data_flag", "detect_saturated_center_flag", "detect_bad_center_flag",
           "detect_moments_failed_flag"]
    )
    columns = object_columns(["g", "i"])
    assert list(columns) == expected
    assert columns["x"][1] == "pix" and columns["g_initFlux"][1] == "nJy" and columns["ra"][1] == "deg"
    assert all(doc for _, _, doc in columns.values())

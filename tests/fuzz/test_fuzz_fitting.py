"""Property-based fuzzing of the fitting library's entry points on numpy arrays.

Properties: `fit_patch` returns exactly one row per input object and raises nothing for bad data (NaN,
inf, huge or denormal pixels and variances, masked or missing bands, positions off the image or NaN);
`fit_psf_image` never raises except for an invalid ``n_gauss``; `cut_stamp` and `model_image` return or
raise a clean error. Every call is bounded in time (fuzzlib.call).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from fuzzlib import all_finite, any_float, arrays, call, fuzz_settings, mostly_sane_float
from hypothesis import given
from hypothesis import strategies as st
from lsst.galmix.fitting import SourceFitConfig, fit_patch, fit_psf_image, model_image
from lsst.galmix.fitting.psf import PsfFit
from lsst.galmix.fitting.stamps import Stamp, cut_stamp
from lsst.galmix.fitting.testing import moffat_psf, psf_kernel

KERNEL = psf_kernel(moffat_psf(3.0), 21)
MIX = fit_psf_image(KERNEL, 2).mixture
ORIGIN = (100, 200)
SHAPE = (36, 40)
MODELS = ["point", "gauss", "exp", "sersic", "expdev", "gaussFixedCen"]


def _clean_image(rng: np.random.Generator, objects: list[tuple[float, float]]) -> np.ndarray:
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(float)
    img = rng.normal(0.0, 1.0, SHAPE)
    for ox, oy in objects:
        if np.isfinite(ox) and np.isfinite(oy):
            img += 300.0 * np.exp(-0.5 * ((x + ORIGIN[0] - ox) ** 2 + (y + ORIGIN[1] - oy) ** 2) / 4.0)
    return img


@st.composite
def band_triples(draw, rng: np.random.Generator, objects: list[tuple[float, float]]):
    kind = draw(st.sampled_from(["clean"] * 4 + ["bad_values", "bad_variance", "masked", "missing", "float32"]))
    if kind == "missing":
        return None
    img = _clean_image(rng, objects)
    var = np.ones(SHAPE)
    bad = np.zeros(SHAPE, bool)
    with np.errstate(all="ignore"):
        if kind == "bad_values":
            for _ in range(draw(st.integers(1, 20))):
                img.flat[draw(st.integers(0, img.size - 1))] = draw(any_float)
        elif kind == "bad_variance":
            value = draw(any_float)
            if draw(st.booleans()):
                var[:] = value
            else:
                for _ in range(draw(st.integers(1, 20))):
                    var.flat[draw(st.integers(0, var.size - 1))] = draw(any_float)
        elif kind == "masked":
            bad[:] = draw(st.booleans())
            bad.flat[:: draw(st.integers(1, 7))] = True
        elif kind == "float32":
            img, var = img.astype(np.float32), var.astype(np.float32)
    return img, var, bad


@st.composite
def objects(draw):
    n = draw(st.integers(0, 3))
    pos = []
    for _ in range(n):
        x = ORIGIN[0] + draw(st.floats(-5, SHAPE[1] + 5) | any_float)
        y = ORIGIN[1] + draw(st.floats(-5, SHAPE[0] + 5) | any_float)
        pos.append((x, y))
    return pos


@fuzz_settings(weight=0.25)
@given(data=st.data(), pos=objects(), model=st.sampled_from(MODELS), seed=st.integers(0, 2**32 - 1),
       blend=st.sampled_from(["joint", "subtract"]), threads=st.sampled_from([1, 2]),
       footprints=st.booleans())
def test_fit_patch_gives_one_row_per_object(data, pos, model, seed, blend, threads, footprints):
    rng = np.random.default_rng(seed)
    images = {b: data.draw(band_triples(rng, pos)) for b in ("g", "r")}
    table = Table({"objectId": np.arange(len(pos), dtype=np.int64),
                   "x": np.array([p[0] for p in pos], float), "y": np.array([p[1] for p in pos], float)})
    fp = None
    if footprints:
        fp = np.zeros(SHAPE, np.int32)
        fp[5:30, 5:35] = 1
        table["footprintLabel"] = np.ones(len(pos), np.int32)
    psf = data.draw(st.sampled_from([MIX, MIX, None, lambda x, y: KERNEL]))
    cfg = SourceFitConfig(blend_mode=blend, n_threads=threads)
    ok, out = call(fit_patch, images, ORIGIN, table, fp, {"g": MIX, "r": psf}, model, cfg)
    assert ok, out
    assert len(out) == len(pos)
    if len(out):
        ok, img = call(model_image, out, model, "g", MIX, SHAPE, ORIGIN)
        assert not ok or all_finite(img)


@fuzz_settings()
@given(kernel=arrays(large=False), n_gauss=st.integers(-1, 5), max_iter=st.integers(0, 300))
def test_fit_psf_image_never_raises_for_data(kernel, n_gauss, max_iter):
    ok, fit = call(fit_psf_image, kernel, n_gauss, max_iter)
    if not ok:
        assert n_gauss not in (1, 2, 3, 4) or not isinstance(kernel, np.ndarray)
        return
    assert isinstance(fit, PsfFit)
    if fit.mixture is not None:
        assert np.isfinite(fit.chi2)


@fuzz_settings()
@given(image=arrays(large=False, ndarray=True), var=arrays(positive=True, large=False, ndarray=True),
       bad=st.none() | st.booleans(),
       center=st.tuples(mostly_sane_float, mostly_sane_float), half=st.integers(-2, 40) | st.just(10**6),
       origin=st.tuples(st.integers(-50, 50), st.integers(-50, 50)))
def test_cut_stamp(image, var, bad, center, half, origin):
    mask = None
    if bad is not None and isinstance(image, np.ndarray) and image.ndim == 2:
        mask = np.full(image.shape, bad)
    ok, stamp = call(cut_stamp, image, var, mask, origin, center, half)
    if ok:
        assert isinstance(stamp, Stamp)
        assert np.isfinite(stamp.image[stamp.weight > 0]).all()
        # A variance so small that 1/variance overflows still gives weight inf (the engine then refuses
        # the band with a message); NaN or negative weights never occur.
        assert (stamp.weight >= 0).all()

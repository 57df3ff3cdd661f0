"""Property-based fuzzing of every public engine function (lsst.galmix.engine / _galmix).

Property: each call returns a finite result (or a documented status) or raises a clean TypeError,
ValueError or IndexError; it never crashes the interpreter and returns within a bounded time (see
fuzzlib.call). ``make test`` runs a fixed handful of examples per test; ``make fuzz`` many more.
"""

from __future__ import annotations

import numpy as np
from fuzzlib import (
    all_finite,
    any_float,
    arrays,
    call,
    fuzz_settings,
    gaussian_rows,
    mixtures,
    mostly_sane_float,
    shapes,
)
from hypothesis import given
from hypothesis import strategies as st
from lsst.galmix import _galmix
from lsst.galmix import engine as ge
from lsst.galmix.models.ellipse import eta_from_q_pa, q_pa_from_eta

OPTION_FIELDS = {
    "max_iter": st.integers(-5, 300) | st.sampled_from([2**31 - 1, -(2**31), 10**7]),
    "max_eval": st.integers(-2, 400) | st.sampled_from([2**31 - 1, 10**8]),
    "ftol": any_float | st.sampled_from([0.0, 1e-10, 1e-3]),
    "xtol": any_float | st.sampled_from([0.0, 1e-4, 1.0]),
    "lambda0": any_float | st.sampled_from([0.0, -1.0, 1e-12, 1e-10, 1e-3, 1.0, 1e10, 1e11]),
    "n_min": any_float | st.floats(0.1, 3.0),
    "n_max": any_float | st.floats(2.0, 10.0),
    "nonnegative_fluxes": st.sampled_from([True, False, None, 1, np.bool_(True), "yes"]),
}
ARRAY_OPTION_FIELDS = ["prior_mean", "prior_sigma", "lower", "upper"]


@st.composite
def options(draw, n_params: int) -> ge.FitOptions | None:
    """FitOptions with random fields; invalid assignments must raise cleanly and change nothing."""
    if draw(st.integers(0, 4)) == 0:
        return None
    o = draw(st.sampled_from([ge.FitOptions, ge.default_psf_fit_options]))()
    for field in draw(st.lists(st.sampled_from(sorted(OPTION_FIELDS) + ARRAY_OPTION_FIELDS), max_size=5)):
        if field in OPTION_FIELDS:
            value = draw(OPTION_FIELDS[field])
        else:
            n = draw(st.sampled_from([n_params, n_params, 0, 1, n_params + 1]))
            value = np.array(draw(st.lists(mostly_sane_float | st.just(np.inf), min_size=n, max_size=n)))
        before = getattr(o, field)
        ok, _ = call(setattr, o, field, value)
        if not ok:
            after = getattr(o, field)
            assert np.array_equal(np.asarray(after), np.asarray(before), equal_nan=True)
    # Keep fits short enough for many examples (the caps themselves are fuzzed above).
    o.max_iter = min(o.max_iter, 60)
    o.max_eval = min(o.max_eval, 300)
    return o


PROFILES = {
    "fixed": lambda: ge.FixedProfile([0.6, 0.4], [0.7, 1.6]),
    "gauss": lambda: ge.FixedProfile([1.0], [1.0]),
    "spline": lambda: ge.SplineProfile(np.log([0.4, 1.0, 3.0, 8.0]), _spline_coeffs()),
}


def _spline_coeffs() -> np.ndarray:
    c = np.zeros((4, 3, 4))
    c[3, :, :2] = [0.6, 0.4]  # constant weights
    c[3, :, 2:] = [np.log(0.7), np.log(1.6)]
    c[2, :, 3] = 0.2  # ln s_2 grows with ln n
    return c


@st.composite
def scenes(draw) -> tuple[ge.Scene, int]:
    n_bands = draw(st.integers(1, 3))
    sources = []
    for _ in range(draw(st.integers(1, 3))):
        comps = [ge.Component(None if k == "point" else PROFILES[k](), k)
                 for k in draw(st.lists(st.sampled_from(["point", "fixed", "gauss", "spline"]), min_size=1,
                                        max_size=2))]
        sources.append(ge.Source(comps))
    return ge.Scene(sources, n_bands), n_bands


def sane_params(draw, scene: ge.Scene, centre: float) -> np.ndarray:
    """Parameters of the scene near the image centre, with random bad values injected."""
    p = np.zeros(scene.n_params)
    for i, kind in enumerate(scene.param_kinds()):
        kind = ge.ParamKind(kind)
        if kind in (ge.ParamKind.X, ge.ParamKind.Y):
            p[i] = centre + draw(st.floats(-4, 4))
        elif kind == ge.ParamKind.LN_REFF:
            p[i] = draw(st.floats(-2, 2.5))
        elif kind in (ge.ParamKind.ETA1, ge.ParamKind.ETA2):
            p[i] = draw(st.floats(-1.5, 1.5))
        elif kind == ge.ParamKind.SERSIC_N:
            p[i] = draw(st.floats(0.5, 6))
        else:
            p[i] = draw(st.floats(0, 1000))
    if draw(st.integers(0, 2)) == 0 and p.size:
        p[draw(st.integers(0, p.size - 1))] = draw(any_float)
    if draw(st.integers(0, 8)) == 0:
        p = np.append(p, 1.0) if draw(st.booleans()) else p[:-1]
    return p


PSF = np.array([[0.7, 0.0, 0.0, 1.2, 0.1, 1.0], [0.3, 0.1, -0.1, 4.0, -0.3, 4.5]])


@st.composite
def psfs(draw, n_sources: int) -> object:
    kind = draw(st.sampled_from(["shared"] * 5 + ["per_source", "rows", "bad", "none", "wrong_count"]))
    if kind == "shared":
        return PSF
    if kind == "per_source":
        return [PSF] * n_sources
    if kind == "rows":
        return draw(gaussian_rows(3, centre=0.0))
    if kind == "none":
        return None
    if kind == "wrong_count":
        return [PSF] * (n_sources + 1)
    return draw(mixtures(3, centre=0.0))


@st.composite
def bands(draw, n_bands: int, n_sources: int, shape: tuple[int, int]) -> list:
    """A list of Bands (sometimes with None entries or the wrong count); construction errors are fine."""
    out = []
    count = n_bands if draw(st.integers(0, 8)) else draw(st.integers(0, n_bands + 1))
    for _ in range(count):
        if draw(st.integers(0, 15)) == 0:
            out.append(None)
            continue
        sane = draw(st.integers(0, 2)) > 0
        image = draw(arrays(shape=shape, sane=sane))
        sigma = None if draw(st.integers(0, 4)) == 0 else draw(arrays(shape=shape, positive=True, sane=sane))
        ok, band = call(ge.Band, image, sigma, psf=draw(psfs(n_sources)), x0=draw(mostly_sane_float),
                        y0=draw(st.floats(-3, 3) | any_float))
        out.append(band if ok else None)
    return out


@fuzz_settings()
@given(x=arrays())
def test_fast_exp(x):
    ok, out = call(_galmix.fast_exp, x)
    if ok:
        with np.errstate(all="ignore"):
            ref = np.exp(np.asarray(x, dtype=np.float64).ravel())
        finite = np.isfinite(ref) & (ref > 1e-307)
        assert np.allclose(out[finite], ref[finite], rtol=1e-15, atol=0)
        assert (out[ref == np.inf] == np.inf).all()


@fuzz_settings()
@given(args=st.tuples(any_float, any_float, any_float, any_float, any_float, any_float),
       g=st.lists(any_float | st.floats(-10, 10), min_size=0, max_size=7))
def test_gaussian_conversions(args, g):
    for fn in (ge.gaussian_from_sigma, ge.gaussian_from_ellipse):
        ok, out = call(fn, *args)
        assert not ok or all_finite(out)
    for fn in (ge.gaussian_to_sigma, ge.gaussian_to_ellipse):
        ok, out = call(fn, g)
        assert not ok or all_finite(out)


@fuzz_settings()
@given(src=mixtures(), psf=mixtures(centre=0.0))
def test_convolve(src, psf):
    ok, out = call(ge.convolve, src, psf)
    if ok:
        assert out.ndim == 2 and out.shape[1] == 6


@fuzz_settings()
@given(mix=mixtures(), out=arrays(), x0=mostly_sane_float, y0=mostly_sane_float,
       shape=shapes(large=False))
def test_render(mix, out, x0, y0, shape):
    ok, res = call(ge.render, mix, out, x0, y0)
    assert not ok or (res is out and all_finite(res))
    ok, res = call(ge.render_image, mix, shape, x0, y0)
    assert not ok or (res.shape == shape and all_finite(res))


@fuzz_settings()
@given(mix=mixtures(), data=arrays(), sigma=st.none() | arrays(positive=True), x0=mostly_sane_float,
       y0=mostly_sane_float, same_shape=st.booleans())
def test_chi2(mix, data, sigma, x0, y0, same_shape):
    if same_shape and sigma is not None and isinstance(data, np.ndarray) and data.ndim == 2:
        sigma = np.abs(np.nan_to_num(np.asarray(data, dtype=np.float64))) + 0.5  # exercise the weighted path
    ok, chi2 = call(ge.chi2, mix, data, sigma, x0, y0)
    assert not ok or (np.isfinite(chi2) and chi2 >= 0)


@fuzz_settings()
@given(mix=gaussian_rows(), n_params=st.integers(0, 5) | st.sampled_from([100, 30000]),
       data=arrays(large=False), sigma=st.none() | arrays(positive=True, large=False), seed=st.integers(0, 99),
       bad_shape=st.integers(0, 10))
def test_normal_equations(mix, n_params, data, sigma, seed, bad_shape):
    shape = (mix.shape[0], 6, n_params)
    if bad_shape == 0:
        shape = (mix.shape[0] + 1, 6, n_params)
    elif bad_shape == 1:
        shape = (mix.shape[0], 5)
    size = int(np.prod(shape))
    derivs = np.random.default_rng(seed).normal(size=size if size < 10**6 else 0)
    derivs = derivs.reshape(shape) if derivs.size == size else np.zeros((0, 6, 1))
    ok, out = call(ge.normal_equations, mix, derivs, data, sigma)
    if ok:
        chi2, grad, H, b = out
        assert all_finite(chi2, grad, H, b) and H.shape == (n_params, n_params)


@fuzz_settings()
@given(w=st.lists(mostly_sane_float, max_size=4), s=st.lists(mostly_sane_float, max_size=4), n=any_float,
       x=st.lists(mostly_sane_float, max_size=5), c=arrays(large=False), n_values=st.integers(0, 5))
def test_profiles(w, s, n, x, c, n_values):
    ok, prof = call(ge.FixedProfile, w, s)
    if ok:
        ok, vals = call(prof.evaluate, n)
        assert ok and all_finite(vals) and abs(vals[0].sum() - 1) < 1e-12
    coeffs = np.asarray(c, dtype=object) if not isinstance(c, np.ndarray) else c
    if isinstance(coeffs, np.ndarray) and coeffs.ndim == 2 and coeffs.size:
        coeffs = np.resize(coeffs.astype(np.float64, copy=False) if coeffs.dtype.kind in "fiub" else coeffs,
                           (4, max(len(x) - 1, 0), 2 * n_values))
    ok, prof = call(ge.SplineProfile, x, coeffs)
    if ok:
        ok, vals = call(prof.evaluate, n)
        assert not ok or all_finite(vals)


@fuzz_settings()
@given(kinds=st.lists(st.lists(st.sampled_from(["point", "fixed", "spline", "none", "bad"]), max_size=3),
                      max_size=4),
       n_bands=st.integers(-2, 4) | st.sampled_from([0, 1000, 1001, 2**31 - 1]),
       idx=st.tuples(st.integers(-3, 6) | st.sampled_from([2**31 - 1, -(2**31)]), st.integers(-2, 4),
                     st.integers(-2, 4)))
def test_scene_construction_and_indices(kinds, n_bands, idx):
    def component(k):
        if k == "point":
            return ge.Component(None, "p")
        if k == "none":
            return None
        if k == "bad":
            return "component"
        return ge.Component(PROFILES["spline" if k == "spline" else "fixed"]())

    ok, sources = call(lambda: [ge.Source([component(k) for k in ks]) for ks in kinds])
    if not ok:
        return
    ok, scene = call(ge.Scene, sources, n_bands)
    if not ok:
        return
    assert len(scene.param_names()) == scene.n_params == len(scene.param_kinds())
    assert scene.param_index().shape == (scene.n_params, 3)
    s, c, b = idx
    ok, off = call(scene.source_offset, s)
    assert ok == (0 <= s < scene.n_sources)
    if ok:
        assert 0 <= off < scene.n_params
    ok, fi = call(scene.flux_index, s, c, b)
    if ok:
        assert 0 <= fi < scene.n_params and scene.param_kinds()[fi] == int(ge.ParamKind.FLUX)


@fuzz_settings(weight=0.7)
@given(data=st.data())
def test_scene_evaluation(data):
    scene, n_bands = data.draw(scenes())
    shape = data.draw(st.sampled_from([(0, 5), (1, 1), (1, 7), (12, 9), (20, 20)]))
    centre = shape[1] / 2
    params = sane_params(data.draw, scene, centre)
    band = data.draw(st.integers(-1, n_bands) | st.sampled_from([2**31 - 1]))
    psf = data.draw(psfs(scene.n_sources))
    ok, g = call(scene.gaussians, params, band, psf)
    assert not ok or (all_finite(g) and g.shape[1] == 6)
    ok, d = call(scene.gaussian_derivatives, params, band, psf)
    assert not ok or (all_finite(d) and d.shape[2] == scene.n_params)
    out = data.draw(arrays(shape=shape)) if data.draw(st.booleans()) else np.zeros(shape)
    ok, img = call(scene.image, params, band, psf, out, data.draw(mostly_sane_float), 0.0)
    assert not ok or all_finite(img)
    ok, img = call(ge.scene_image, scene, params, band, psf, shape)
    assert not ok or all_finite(img)
    blist = data.draw(bands(n_bands, scene.n_sources, shape))
    ok, chi2 = call(scene.chi2, params, blist)
    assert not ok or (np.isfinite(chi2) and chi2 >= 0)
    active = data.draw(st.none() | st.lists(st.booleans(), min_size=scene.n_params, max_size=scene.n_params)
                       | st.lists(st.booleans(), max_size=3))
    ok, ne = call(scene.normal_equations, params, blist, active)
    assert not ok or all_finite(*ne)


def _check_fit_result(res, n_params):
    assert isinstance(res.status, ge.FitStatus) and isinstance(res.message, str)
    if res.status in (ge.FitStatus.CONVERGED, ge.FitStatus.MAX_ITER):
        assert res.params.shape == (n_params,) and all_finite(res.params, res.chi2, res.objective)
        assert res.chi2 >= 0 and res.n_eval >= 1
    assert res.fisher.shape == (n_params, n_params) or res.status == ge.FitStatus.ERROR


@fuzz_settings(weight=0.5)
@given(data=st.data())
def test_fit_and_fit_batch(data):
    scene, n_bands = data.draw(scenes())
    shape = data.draw(st.sampled_from([(1, 1), (3, 4), (16, 16), (24, 20)]))
    centre = shape[1] / 2
    blist = data.draw(bands(n_bands, scene.n_sources, shape))
    params = sane_params(data.draw, scene, centre)
    free = data.draw(st.none() | st.lists(st.booleans(), min_size=scene.n_params, max_size=scene.n_params)
                     | st.lists(st.booleans(), max_size=2))
    opts = data.draw(options(scene.n_params))
    ok, res = call(ge.fit, scene, blist, params, free, opts)
    if ok:
        _check_fit_result(res, scene.n_params)
    problems = []
    for _ in range(data.draw(st.integers(0, 3))):
        ok, prob = call(ge.FitProblem, scene, blist, params, free, opts)
        if ok:
            problems.append(prob)
    n_threads = data.draw(st.sampled_from([-1, 0, 1, 2, 3, 64]))
    ok, results = call(ge.fit_batch, problems, n_threads)
    assert ok and len(results) == len(problems)
    for r in results:
        _check_fit_result(r, scene.n_params)


@fuzz_settings()
@given(image=arrays(large=False), kernel=st.booleans(), n_gauss=st.integers(-1, 5),
       x0=mostly_sane_float, y0=mostly_sane_float, data=st.data())
def test_fit_psf(image, kernel, n_gauss, x0, y0, data):
    if kernel:
        # A realistic kernel (a blurred peak) so that the fit itself runs, not only the input checks.
        size = data.draw(st.sampled_from([1, 3, 9, 15]))
        yy, xx = np.mgrid[:size, :size] - size // 2
        image = np.exp(-0.5 * (xx**2 + yy**2) / data.draw(st.floats(0.2, 9.0))) + data.draw(
            st.floats(-1e-3, 1e-3))
    opts = data.draw(options(2 + 3 * max(n_gauss, 0) + max(n_gauss, 0)))
    ok, res = call(ge.fit_psf, image, n_gauss, x0, y0, opts)
    if ok:
        assert isinstance(res.status, ge.FitStatus)
        if res.status in (ge.FitStatus.CONVERGED, ge.FitStatus.MAX_ITER):
            assert all_finite(res.gaussians, res.flux, res.chi2)


@fuzz_settings()
@given(G=arrays(large=False), b=st.lists(any_float | st.floats(-10, 10), max_size=6), psd=st.booleans())
def test_nnls_gram(G, b, psd):
    if psd:
        rng = np.random.default_rng(len(b))
        A = rng.normal(size=(len(b) + 2, len(b)))
        G = A.T @ A
    ok, x = call(ge.nnls_gram, G, b)
    if ok:
        assert all_finite(x) and (x >= 0).all()


@fuzz_settings()
@given(data=st.data())
def test_fit_options_fields(data):
    o = data.draw(options(data.draw(st.integers(0, 6))))
    if o is not None:
        # Whatever was accepted stays within the documented ranges.
        assert 0 <= o.max_iter <= 10**6 and 1 <= o.max_eval <= 10**7
        assert 1e-10 <= o.lambda0 <= 1e10 and np.isfinite([o.ftol, o.xtol, o.n_min, o.n_max]).all()


@fuzz_settings()
@given(q=arrays(large=False) | any_float, pa=any_float)
def test_shape_helpers(q, pa):
    ok, eta = call(eta_from_q_pa, q, pa)
    assert not ok or all_finite(eta)
    ok, qt = call(q_pa_from_eta, q, pa)
    assert not ok or all_finite(qt)


@fuzz_settings()
@given(mix=mixtures(n_max=8), noise=any_float | st.floats(0.0, 10.0), frac=any_float | st.floats(0.0, 0.1),
       edge=any_float | st.floats(0.0, 1.0),
       limit=st.integers(-5, 400) | st.sampled_from([2**16, 2**16 + 1, 2**31 - 1]))
def test_stamp_half_sizes(mix, noise, frac, edge, limit):
    ok, res = call(ge.stamp_half_sizes, mix, noise, frac, edge, limit)
    if ok:
        assert len(res) == 2 and all(isinstance(h, int) and h <= max(limit, 0) for h in res)


@fuzz_settings()
@given(weight=arrays(), n=st.integers(0, 6), x0=st.integers(-50, 50) | st.sampled_from([2**31 - 1, -(2**31)]),
       y0=st.integers(-50, 50), sigmas=any_float | st.sampled_from([3.0, 5.0]), data=st.data())
def test_background_mask(weight, n, x0, y0, sigmas, data):
    centres = np.array(data.draw(st.lists(mostly_sane_float, min_size=2 * n, max_size=2 * n)), float)
    terms = st.lists(mostly_sane_float | st.floats(0.1, 20.0), min_size=3 * n, max_size=3 * n)
    centres, covs = centres.reshape(-1, 2), np.array(data.draw(terms), float).reshape(-1, 3)
    ok, res = call(ge.background_mask, weight, x0, y0, centres, covs, sigmas)
    if ok:
        w = np.asarray(weight, dtype=np.float64)
        assert res.dtype == bool and res.shape == w.shape and not (res & ~(w > 0)).any()


@fuzz_settings()
@given(image=arrays(), weight=st.none() | arrays(),
       guess=st.none() | st.tuples(mostly_sane_float, mostly_sane_float),
       sigma0=any_float | st.floats(0.3, 5.0), max_iter=st.integers(-5, 40), fix=st.booleans(),
       rtol=any_float | st.sampled_from([1e-3, 1e-2]))
def test_adaptive_second_moments(image, weight, guess, sigma0, max_iter, fix, rtol):
    ok, res = call(ge.adaptive_second_moments, image, weight, 1.5, -2.0, guess, sigma0, max_iter, fix, rtol)
    if ok:
        x, y, xx, xy, yy, flux, converged = res
        if converged:
            assert all_finite(np.array([x, y, xx, xy, yy, flux])) and xx * yy - xy * xy > 0

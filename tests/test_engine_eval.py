"""Engine evaluation through the bindings: images vs GalSim, chi2, one-pass normal equations, errors."""

import os
import subprocess
import sys

import galsim
import numpy as np
import pytest
from lsst.galmix import _galmix
from lsst.galmix import engine as ge

# Every test runs under each kernel instruction set this CPU supports (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("engine_isa")

GSP = galsim.GSParams(folding_threshold=1e-10, maxk_threshold=1e-12, kvalue_accuracy=1e-14)


def galsim_mixture(mix: np.ndarray) -> galsim.GSObject:
    """A GalSim sum of transformed, shifted Gaussians equal to an (N, 6) mixture."""
    objs = []
    for f, x, y, xx, xy, yy in mix:
        m = np.linalg.cholesky(np.array([[xx, xy], [xy, yy]]))
        g = galsim.Gaussian(sigma=1.0, gsparams=GSP).transform(m[0, 0], m[0, 1], m[1, 0], m[1, 1])
        objs.append(g.withFlux(f).shift(x, y))
    return galsim.Sum(objs)


def galsim_draw(obj: galsim.GSObject, shape: tuple[int, int], x0: int, y0: int) -> np.ndarray:
    ny, nx = shape
    im = galsim.ImageD(galsim.BoundsI(x0, x0 + nx - 1, y0, y0 + ny - 1), scale=1.0)
    # center=(0, 0): the profile's origin sits at pixel coordinate (0, 0); pixel centres are integers.
    obj.drawImage(image=im, method="no_pixel", center=galsim.PositionD(0.0, 0.0))
    return im.array


SRC = np.array([[100.0, 10.3, 12.1, 4.0, 1.5, 2.0], [50.0, 10.7, 11.6, 9.0, -2.0, 6.0]])
PSF = np.array([[0.7, 0.1, -0.05, 1.2, 0.1, 1.0], [0.3, 0.0, 0.1, 5.0, 0.3, 4.0]])


def test_conversions_roundtrip():
    g = ge.gaussian_from_ellipse(3.0, 1.0, 2.0, 2.5, 0.4, 0.7)
    a, q, theta = ge.gaussian_to_ellipse(g)
    assert (a, q, theta) == pytest.approx((2.5, 0.4, 0.7), rel=1e-12)
    sx, sy, rho = ge.gaussian_to_sigma(g)
    g2 = ge.gaussian_from_sigma(3.0, 1.0, 2.0, sx, sy, rho)
    np.testing.assert_allclose(g2, g, rtol=1e-12)
    # The major axis along theta: variance along (cos, sin) is a^2, across it (a q)^2.
    c = np.array([[g[3], g[4]], [g[4], g[5]]])
    u = np.array([np.cos(0.7), np.sin(0.7)])
    v = np.array([-np.sin(0.7), np.cos(0.7)])
    assert u @ c @ u == pytest.approx(2.5**2, rel=1e-12)
    assert v @ c @ v == pytest.approx((2.5 * 0.4) ** 2, rel=1e-12)
    with pytest.raises(ValueError):
        ge.gaussian_from_ellipse(1.0, 0.0, 0.0, 1.0, 1.5, 0.0)


def test_convolve_adds_covariances_and_centres():
    conv = ge.convolve(SRC, PSF)
    assert conv.shape == (4, 6)
    np.testing.assert_allclose(conv[1], [SRC[0, 0] * PSF[1, 0], *(SRC[0, 1:] + PSF[1, 1:])])
    np.testing.assert_allclose(conv[2], [SRC[1, 0] * PSF[0, 0], *(SRC[1, 1:] + PSF[0, 1:])])


@pytest.mark.parametrize("x0,y0,shape", [(0, 0, (24, 22)), (-3, 2, (25, 30)), (1000, -500, (17, 40))])
def test_render_matches_galsim(x0, y0, shape):
    mix = SRC.copy()
    shift = (x0 + shape[1] / 2 - 10.0, y0 + shape[0] / 2 - 12.0)
    mix[:, 1] += shift[0]
    mix[:, 2] += shift[1]
    conv = ge.convolve(mix, PSF)
    ref = galsim_draw(galsim_mixture(conv), shape, x0, y0)
    ours = ge.render_image(conv, shape, x0, y0)
    assert np.abs(ours - ref).max() <= 1e-9 * ref.max()
    # The convolution itself, done by GalSim (FFT with tight accuracy settings).
    # Convolve near the origin (small FFT), then shift.
    conv_obj = galsim.Convolve(galsim_mixture(SRC), galsim_mixture(PSF), gsparams=GSP).shift(*shift)
    ref_conv = galsim_draw(conv_obj, shape, x0, y0)
    assert np.abs(ours - ref_conv).max() <= 1e-9 * ref_conv.max()


def test_render_float32_and_strided_output():
    conv = ge.convolve(SRC, PSF)
    ref = ge.render_image(conv, (30, 28))
    f32 = ge.render_image(conv, (30, 28), dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, ref, rtol=1e-6, atol=1e-7 * ref.max())
    big = np.zeros((30, 40))
    view = big[:, 5:33]  # non-contiguous rows, contiguous x
    ge.render(conv, view, 0.0, 0.0)
    np.testing.assert_array_equal(view, ref)
    assert np.all(big[:, :5] == 0) and np.all(big[:, 33:] == 0)


def test_fast_exp_accuracy():
    x = np.concatenate([np.linspace(-708, 709, 400001), np.linspace(-1, 1, 10001)])
    ours = _galmix.fast_exp(x)
    rel = np.abs(ours / np.exp(x) - 1.0)
    assert rel.max() <= 2.0 * np.finfo(np.float64).eps
    assert np.all(_galmix.fast_exp(np.array([-709.0, -1e4, -np.inf])) == 0.0)


def make_data(shape, seed=3):
    rng = np.random.default_rng(seed)
    conv = ge.convolve(SRC, PSF)
    model = ge.render_image(conv, shape)
    sigma = 0.5 + rng.uniform(0, 1, shape)
    data = model + rng.normal(0, 1, shape) * sigma
    return conv, data, 1.0 / sigma


def test_chi2_and_masking():
    conv, data, sinv = make_data((26, 24))
    model = ge.render_image(conv, data.shape)
    expected = np.sum((sinv * (data - model)) ** 2)
    assert ge.chi2(conv, data, sinv) == pytest.approx(expected, rel=1e-12)
    assert ge.chi2(conv, data) == pytest.approx(np.sum((data - model) ** 2), rel=1e-12)
    mask = np.zeros(data.shape, bool)
    mask[3:9, 4:20] = True
    mask[:, 0] = True
    sinv_m = np.where(mask, 0.0, sinv)
    data_m = np.where(mask, np.nan, data)  # masked pixels are never read
    expected_m = np.sum(((sinv * (data - model)) ** 2)[~mask])
    assert ge.chi2(conv, data_m, sinv_m) == pytest.approx(expected_m, rel=1e-12)


def explicit_jacobian(conv, shape, x0=0.0, y0=0.0):
    """(N_pix, 6N) Jacobian of the image w.r.t. every Gaussian value, by central differences."""
    cols = []
    for g in range(conv.shape[0]):
        for k in range(6):
            h = 1e-5 * max(abs(conv[g, k]), 1.0)
            up, dn = conv.copy(), conv.copy()
            up[g, k] += h
            dn[g, k] -= h
            cols.append(((ge.render_image(up, shape, x0, y0) - ge.render_image(dn, shape, x0, y0)) / (2 * h)).ravel())
    return np.array(cols).T


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normal_equations_match_explicit_jacobian(dtype):
    conv, data, sinv = make_data((22, 21))
    shape = data.shape
    mask = np.zeros(shape, bool)
    mask[5:8, 2:15] = True
    sinv[mask] = 0.0
    data[mask] = np.nan
    data = data.astype(dtype)
    sinv = sinv.astype(dtype)
    G = conv.shape[0]
    # Parameters: every value of every Gaussian (identity derivatives), plus one shared parameter that
    # moves all centres together (sparse, several Gaussians per column).
    P = 6 * G + 1
    deriv = np.zeros((G, 6, P))
    for g in range(G):
        for k in range(6):
            deriv[g, k, 6 * g + k] = 1.0
        deriv[g, 1, -1] = 1.0
    chi2, grad, H, b = ge.normal_equations(conv, deriv, data, sinv, 0.0, 0.0)
    J0 = explicit_jacobian(conv, shape)
    J = np.column_stack([J0, sum(J0[:, 6 * g + 1] for g in range(G))])
    w = (sinv.astype(np.float64) ** 2).ravel()
    d = np.where(mask, 0.0, data.astype(np.float64)).ravel()
    r = d - ge.render_image(conv, shape).ravel()
    keep = w > 0
    H_ref = (J[keep].T * w[keep]) @ J[keep]
    b_ref = J[keep].T @ (w[keep] * r[keep])
    assert chi2 == pytest.approx(np.sum(w[keep] * r[keep] ** 2), rel=1e-12)
    np.testing.assert_allclose(H, H_ref, rtol=1e-6, atol=1e-6 * np.abs(H_ref).max())
    np.testing.assert_allclose(b, b_ref, rtol=1e-6, atol=1e-6 * np.abs(b_ref).max())
    np.testing.assert_allclose(grad, -2 * b)
    # The gradient is the derivative of chi2 (central differences on a Gaussian's values).
    for g, k in [(0, 1), (1, 3), (2, 4), (3, 0)]:
        h = 1e-6 * max(abs(conv[g, k]), 1.0)
        up, dn = conv.copy(), conv.copy()
        up[g, k] += h
        dn[g, k] -= h
        fd = (ge.chi2(up, data, sinv) - ge.chi2(dn, data, sinv)) / (2 * h)
        assert grad[6 * g + k] == pytest.approx(fd, rel=1e-6, abs=1e-8 * abs(chi2))


def test_masked_pixels_contribute_nothing():
    conv, data, sinv = make_data((20, 20))
    deriv = np.zeros((conv.shape[0], 6, 2))
    deriv[:, 1, 0] = 1.0
    deriv[:, 0, 1] = 1.0
    sinv_m = sinv.copy()
    sinv_m[10:, :] = 0.0
    data_m = data.copy()
    data_m[10:, :] = np.inf
    full = ge.normal_equations(conv, deriv, data_m, sinv_m)
    top = ge.normal_equations(conv, deriv, data[:10], sinv[:10])
    for a, b in zip(full, top):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_bad_inputs_raise_value_error():
    conv, data, sinv = make_data((12, 12))
    bad = data.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"\[3, 4\]"):
        ge.chi2(conv, bad, sinv)
    with pytest.raises(ValueError, match="inverse sigma"):
        s = sinv.copy()
        s[1, 1] = -1.0
        ge.chi2(conv, data, s)
    with pytest.raises(ValueError, match="inverse sigma"):
        s = sinv.copy()
        s[0, 2] = np.inf
        ge.chi2(conv, data, s)
    with pytest.raises(ValueError, match="does not match"):
        ge.chi2(conv, data, sinv[:, :-1])
    with pytest.raises(ValueError, match="float32 or float64"):
        ge.chi2(conv, data.astype(np.int32))
    with pytest.raises(ValueError, match="positive definite"):
        ge.chi2(np.array([[1.0, 0, 0, 1.0, 2.0, 1.0]]), data)
    with pytest.raises(ValueError, match="non-finite"):
        ge.chi2(np.array([[np.nan, 0, 0, 1.0, 0.0, 1.0]]), data)
    with pytest.raises(ValueError, match="N, 6"):
        ge.chi2(np.ones((2, 5)), data)
    with pytest.raises(ValueError, match="N, 6, P"):
        ge.normal_equations(conv, np.zeros((conv.shape[0], 5, 2)), data)
    with pytest.raises(ValueError, match="2-d"):
        ge.chi2(conv, data.ravel())


def test_dispatch_info_names_the_active_kernels(engine_isa):
    assert _galmix.active_isa() == engine_isa
    info = ge.dispatch_info()
    assert info.startswith(f"kernels: {engine_isa} (")
    assert info.endswith("this CPU runs: " + ", ".join(_galmix.supported_isas()))
    assert _galmix.supported_isas()[-1] == "baseline"


def test_unknown_instruction_set_is_refused(engine_isa):
    with pytest.raises(ValueError, match="unknown instruction set 'sse9'.*baseline"):
        _galmix.set_isa("sse9")
    assert _galmix.active_isa() == engine_isa


@pytest.mark.parametrize("value", ["baseline", "auto", "sse9"])
def test_galmix_isa_environment_variable(value):
    code = "from lsst.galmix import _galmix; print(_galmix.active_isa()); print(_galmix.dispatch_info())"
    env = dict(os.environ, GALMIX_ISA=value)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    if value == "sse9":
        # The import fails with the reason rather than running some other code path.
        assert proc.returncode != 0
        assert "GALMIX_ISA=sse9: unknown instruction set 'sse9'" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    active, info = proc.stdout.splitlines()
    if value == "baseline":
        assert active == "baseline" and "chosen by GALMIX_ISA=baseline" in info
    else:
        assert active == _galmix.supported_isas()[0] and "chosen by the best this CPU runs" in info


def analytic_normal_equations(conv, deriv, data, sinv, x0=0.0, y0=0.0):
    """chi2, H, b from closed-form Gaussian derivatives with numpy's exp and no truncation."""
    ny, nx = data.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    x, y = (x + x0).ravel(), (y + y0).ravel()
    model = np.zeros(x.size)
    jac = np.zeros((x.size, deriv.shape[2]))
    for g, (f, cx, cy, xx, xy, yy) in enumerate(conv):
        det = xx * yy - xy * xy
        ixx, ixy, iyy = yy / det, -xy / det, xx / det
        dx, dy = x - cx, y - cy
        ux, uy = ixx * dx + ixy * dy, ixy * dx + iyy * dy
        e = np.exp(-0.5 * (dx * ux + dy * uy)) / (2 * np.pi * np.sqrt(det))
        v = f * e
        model += v
        # d(value)/d(flux, cx, cy, xx, xy, yy)
        dv = np.stack([e, v * ux, v * uy, 0.5 * v * (ux * ux - ixx), v * (ux * uy - ixy), 0.5 * v * (uy * uy - iyy)])
        jac += dv.T @ deriv[g]
    w = sinv.ravel() ** 2
    r = data.ravel() - model
    return np.sum(w * r * r), (jac.T * w) @ jac, jac.T @ (w * r)


def wide_scene():
    """Gaussians from 0.4 to 30 pixels wide on 301-pixel rows, some centred outside the image."""
    rng = np.random.default_rng(11)
    rows = []
    for sigma in [0.4, 0.9, 1.7, 3.0, 6.0, 12.0, 30.0]:
        for cx in [-20.0, 40.3, 150.7, 290.2]:
            q, theta = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
            rows.append(ge.gaussian_from_ellipse(rng.uniform(50, 500), cx, rng.uniform(-5, 40), sigma, q, theta))
    conv = np.array(rows)
    shape = (37, 301)
    model = ge.render_image(conv, shape, 0.0, -3.0)
    sinv = rng.uniform(0.5, 1.5, shape)
    data = model + rng.normal(0, 1, shape) / sinv
    G = conv.shape[0]
    # Columns of every part the kernel distinguishes: flux (0, 6), centre (1, 2), covariance (3, 4, 5),
    # flux and covariance (7) and all three (8). The centre and covariance parts are the same for every
    # Gaussian (one centre and one covariance group of G Gaussians); column 6 has no flux part in
    # Gaussian 0, which then starts a flux group of its own. Rows of 301 pixels: the long-run steps.
    deriv = np.zeros((G, 6, 9))
    for g in range(G):
        deriv[g, :, :6] = np.eye(6) * [1.0 / conv[g, 0], 1, 1, 1, 1, 1]  # one shared set of 6 columns
        deriv[g, 0, 6] = g / G  # a sparse, uneven one
        deriv[g, [0, 4], 7] = [0.1, 1.0]
        deriv[g, [0, 1, 5], 8] = [0.2, 0.5, 0.25]
    return conv, deriv, data, sinv


def test_wide_rows_normal_equations_match_closed_form(engine_isa):
    """Long rows: the kernel's exponentials follow row recurrences refreshed exactly every few blocks."""
    conv, deriv, data, sinv = wide_scene()
    chi2, _, H, b = ge.normal_equations(conv, deriv, data, sinv, 0.0, -3.0)
    chi2_ref, H_ref, b_ref = analytic_normal_equations(conv, deriv, data, sinv, 0.0, -3.0)
    assert chi2 == pytest.approx(chi2_ref, rel=1e-11)
    # Truncation at exp(-25) of each Gaussian's peak is the only approximation.
    np.testing.assert_allclose(H, H_ref, rtol=1e-9, atol=1e-11 * np.abs(H_ref).max())
    np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-11 * np.abs(b_ref).max())


def test_instruction_sets_agree_to_rounding(engine_isa):
    """Every kernel set gives the same image, chi2 and normal equations (sums differ only in order)."""
    conv, deriv, data, sinv = wide_scene()
    results = {}
    for isa in _galmix.supported_isas():
        _galmix.set_isa(isa)
        results[isa] = (ge.render_image(conv, data.shape, 0.0, -3.0), ge.chi2(conv, data, sinv, 0.0, -3.0),
                        *ge.normal_equations(conv, deriv, data, sinv, 0.0, -3.0))
    ref = results["baseline"]
    # Rounding scales of the sums (Cauchy-Schwarz): |H_cd| <= sqrt(H_cc H_dd), |b_c| <= sqrt(H_cc chi2).
    # b is a sum of terms of both signs (noise), so its rounding is measured against that bound.
    h_scale = np.sqrt(np.outer(np.diag(ref[4]), np.diag(ref[4])))
    b_scale = np.sqrt(np.diag(ref[4]) * ref[2])
    for image, chi2, ne_chi2, _, H, b in results.values():
        np.testing.assert_allclose(image, ref[0], rtol=1e-14, atol=1e-15 * ref[0].max())
        assert chi2 == pytest.approx(ref[1], rel=1e-13)
        assert ne_chi2 == pytest.approx(ref[2], rel=1e-12)
        assert np.all(np.abs(H - ref[4]) <= 1e-12 * h_scale)
        assert np.all(np.abs(b - ref[5]) <= 1e-12 * b_scale)


def test_truncated_evaluation_is_exact_to_double_precision():
    """Gaussians are skipped beyond 8.9 sigma; the image still equals the exact sum to ~1e-16 of its peak."""
    mix = np.array([[5.0, 3.2, 60.7, 0.3, 0.05, 0.4], [2.0, 70.1, 10.3, 9.0, -3.0, 4.0],
                    [1.0, 40.0, 40.0, 400.0, 100.0, 300.0]])
    shape = (80, 90)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    exact = np.zeros(shape)
    for f, cx, cy, xx, xy, yy in mix:
        det = xx * yy - xy * xy
        dx, dy = x - cx, y - cy
        q = (yy * dx * dx - 2 * xy * dx * dy + xx * dy * dy) / det
        exact += f / (2 * np.pi * np.sqrt(det)) * np.exp(-0.5 * q)
    ours = ge.render_image(mix, shape)
    assert np.abs(ours - exact).max() <= 4 * np.finfo(float).eps * exact.max()
    # Far from the compact Gaussian its tail is dropped, but only where it is below 1e-17 of its peak.
    assert ours[0, 89] == pytest.approx(exact[0, 89], rel=1e-12)


def test_byte_swapped_input_is_accepted():
    """FITS data arrive big-endian: they are converted (the only case where the engine copies)."""
    conv, data, sinv = make_data((15, 16))
    expected = ge.chi2(conv, data, sinv)
    swapped = data.astype(">f8")
    assert ge.chi2(conv, swapped, sinv.astype(">f4")) == pytest.approx(expected, rel=1e-6)
    band = ge.Band(swapped, sinv.astype(">f8"), psf=PSF)
    assert band.image.dtype == np.float64 and band.image.dtype.isnative

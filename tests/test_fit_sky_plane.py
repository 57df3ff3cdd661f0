"""Local sky plane: level + gradients per band, linear scene parameters fitted jointly with the sources."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix import engine as ge
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp
from lsst.galmix.schema import sky_column, sky_grad_column, source_columns

PSF = moffat_psf(4.0)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
TRUTH = GalaxyTruth(50.3, 49.6, 1000.0, n=1.5, reff=4.0, q=0.7, position_angle=0.3)
SHAPE = (101, 101)
CLEAN = render_stamp([TRUTH], PSF, SHAPE)
SIGMA = noise_sigma_for_snr(CLEAN, 100.0)
# A tilted pedestal: 0.5 sigma at the galaxy, changing by 1.5 and -1 sigma across 50 pixels along x and y.
LEVEL, GRAD_X, GRAD_Y = 0.5 * SIGMA, 0.03 * SIGMA, -0.02 * SIGMA


def _pedestal(shape=SHAPE, x0=0, y0=0):
    yy, xx = np.mgrid[y0 : y0 + shape[0], x0 : x0 + shape[1]]
    return LEVEL + GRAD_X * (xx - TRUTH.x) + GRAD_Y * (yy - TRUTH.y)


def _scene(n_bands=2, origin=(20.0, 30.0)):
    src = ge.Source([ge.Component(ge.FixedProfile(np.ones(1), np.ones(1)), "g")])
    return ge.Scene([src], n_bands=n_bands, sky_plane=True, sky_origin=origin)


def test_plane_gaussians_render_a_plane():
    psf = np.array([[1.0, 0, 0, 2.0, 0, 2.0]])
    scene = _scene()
    src = ge.Source([ge.Component(ge.FixedProfile(np.ones(1), np.ones(1)), "g")])
    plain = ge.Scene([src], n_bands=2)
    assert scene.has_sky and scene.has_sky_plane and scene.sky_origin == (20.0, 30.0)
    assert scene.n_params == plain.n_params + 6
    kinds = scene.param_kinds()
    assert kinds[scene.sky_index(1)] == int(ge.ParamKind.SKY)
    assert kinds[scene.sky_grad_index(1, 0)] == int(ge.ParamKind.SKY_GRAD_X)
    assert kinds[scene.sky_grad_index(1, 1)] == int(ge.ParamKind.SKY_GRAD_Y)
    assert scene.param_names()[scene.sky_grad_index(0, 1)] == "skyGradY[0]"
    p = np.zeros(scene.n_params)
    p[:5] = [20.0, 30.0, np.log(2.0), 0.1, 0.0]
    p[scene.flux_index(0, 0, 1)] = 100.0
    p[[scene.sky_index(1), scene.sky_grad_index(1, 0), scene.sky_grad_index(1, 1)]] = [0.37, 2e-3, -5e-3]
    a, b = np.zeros((400, 300)), np.zeros((400, 300))
    scene.image(p, 1, psf, a, -100.0, -150.0)
    plain.image(p[: plain.n_params], 1, psf, b, -100.0, -150.0)
    yy, xx = np.mgrid[-150:250, -100:200]
    expect = 0.37 + 2e-3 * (xx - 20.0) + -5e-3 * (yy - 30.0)
    # Within 1e-6 of the plane's range over the image (the wide Gaussians' curvature: r^2 / 2V <= 5e-10).
    np.testing.assert_allclose(a - b, expect, rtol=0, atol=1e-6 * np.abs(expect).max())
    # Band 0 has no sky: its image is the source alone.
    scene.image(p, 0, psf, a, -100.0, -150.0)
    np.testing.assert_allclose(a, 0.0, atol=1e-12)


def test_plane_normal_equations_match_finite_differences():
    rng = np.random.default_rng(5)
    scene = _scene(n_bands=1, origin=(31.0, 27.5))
    psf = np.array([[0.7, 0, 0, 2.0, 0.2, 2.5], [0.3, 0.1, -0.1, 6.0, 0, 5.0]])
    p = np.zeros(scene.n_params)
    p[:6] = [30.3, 28.7, np.log(3.0), 0.2, -0.1, 1.3]
    p[scene.flux_index(0, 0, 0)] = 500.0
    p[[scene.sky_index(0), scene.sky_grad_index(0, 0), scene.sky_grad_index(0, 1)]] = [0.8, 0.01, -0.02]
    shape = (48, 56)
    model = np.zeros(shape)
    scene.image(p, 0, psf, model, 5.0, 4.0)
    data = model + rng.normal(0, 1.0, shape) + 0.3
    sigma_inv = np.full(shape, 1.0)
    sigma_inv[10:14, 20:30] = 0.0  # masked pixels are skipped
    bands = [ge.Band(data, sigma_inv=sigma_inv, psf=psf, x0=5.0, y0=4.0)]
    chi2, grad, H, b = scene.normal_equations(p, bands)
    sky = [scene.sky_index(0), scene.sky_grad_index(0, 0), scene.sky_grad_index(0, 1)]
    # Jacobian columns of the sky parameters by central differences of the model image.
    cols = {}
    for i in range(scene.n_params):
        # Steps of 1e-4: each plane gradient is the difference of two Gaussians of ~5e7 times its value
        # per pixel, so model images carry ~1e-16 * 5e7 of rounding, too much for smaller steps.
        h = 1e-4 * max(1.0, abs(p[i]))
        up, dn = p.copy(), p.copy()
        up[i] += h
        dn[i] -= h
        mu, md = np.zeros(shape), np.zeros(shape)
        scene.image(up, 0, psf, mu, 5.0, 4.0)
        scene.image(dn, 0, psf, md, 5.0, 4.0)
        cols[i] = (mu - md) / (2 * h)
        fd = (scene.chi2(up, bands) - scene.chi2(dn, bands)) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-7 * chi2), scene.param_names()[i]
    w = sigma_inv**2
    for i in sky:
        # The plane is exactly linear: its columns are 1, x - xs, y - ys.
        for j in range(scene.n_params):
            ref = float(np.sum(w * cols[i] * cols[j]))
            assert H[i, j] == pytest.approx(ref, rel=1e-5, abs=1e-7 * np.sqrt(H[i, i] * H[j, j])), (i, j)
        assert b[i] == pytest.approx(float(np.sum(w * cols[i] * (data - model))), rel=1e-6, abs=1e-6)
    yy, xx = np.mgrid[4 : 4 + shape[0], 5 : 5 + shape[1]]
    np.testing.assert_allclose(cols[sky[1]], xx - 31.0, atol=1e-5)
    np.testing.assert_allclose(cols[sky[2]], yy - 27.5, atol=1e-5)


def _fit(img, sky="plane", bands=("r",), shape=SHAPE):
    objects = Table({"objectId": [1], "x": [TRUTH.x], "y": [TRUTH.y]})
    cfg = SourceFitConfig(residual_threshold=0.0, sky=sky)
    images = {b: (img[b] if isinstance(img, dict) else img, np.full(shape, SIGMA**2), None) for b in bands}
    return fit_patch(images, (0, 0), objects, None, {b: MIX for b in bands}, "sersic", cfg)


def test_fitted_plane_equals_the_tilted_pedestal_and_galaxy_is_unbiased():
    pulls: dict[str, list[float]] = {k: [] for k in ("sky", "gx", "gy", "flux", "n", "reff")}
    for seed in range(12):
        img = CLEAN + _pedestal() + np.random.default_rng(seed).normal(0, SIGMA, SHAPE)
        out = _fit(img)
        assert not out["sersic_flag"][0]
        sky = sky_column("sersic", "r")
        gx, gy = sky_grad_column("sersic", "r", "x"), sky_grad_column("sersic", "r", "y")
        pulls["sky"].append((out[sky][0] - LEVEL) / out[sky + "Err"][0])
        pulls["gx"].append((out[gx][0] - GRAD_X) / out[gx + "Err"][0])
        pulls["gy"].append((out[gy][0] - GRAD_Y) / out[gy + "Err"][0])
        pulls["flux"].append((out["r_sersicFlux"][0] - TRUTH.flux) / out["r_sersicFluxErr"][0])
        pulls["n"].append((out["sersic_index"][0] - TRUTH.n) / out["sersic_indexErr"][0])
        pulls["reff"].append((out["sersic_reffPix"][0] - TRUTH.reff) / (out["sersic_reffErr"][0] / 0.2))
    for key, p in pulls.items():
        p = np.asarray(p)
        assert (np.abs(p) < 3.5).all(), (key, p)
        assert abs(p.mean()) < 3 / np.sqrt(len(p)) + 0.15, (key, p.mean())  # unbiased
        assert 0.5 < p.std() < 1.6, (key, p.std())


def test_a_flat_sky_leaves_the_tilt_in_the_residual():
    """The tilt is real signal: a flat sky leaves its power in chi2, the plane removes it."""
    for seed in range(3):
        img = CLEAN + _pedestal() + np.random.default_rng(seed).normal(0, SIGMA, SHAPE)
        flat, plane = _fit(img, sky="flat"), _fit(img)
        assert np.isnan(flat[sky_grad_column("sersic", "r", "x")][0])
        # The tilt's power per pixel over a square stamp: mean of (grad . (r - centre))^2 / sigma^2.
        n_pix = flat["sersic_n_pix"][0]
        excess = (GRAD_X**2 + GRAD_Y**2) * (n_pix - 1) / 12 / SIGMA**2
        assert excess > 0.1
        assert flat["sersic_chisq_reduced"][0] - 1 > 0.5 * excess, (flat["sersic_chisq_reduced"][0], excess)
        assert abs(plane["sersic_chisq_reduced"][0] - 1) < 4 * np.sqrt(2 / plane["sersic_n_pix"][0])


def test_plane_per_band_and_columns():
    rng = np.random.default_rng(3)
    tilt = {"g": (-0.3, 0.02, 0.0), "r": (0.4, 0.0, -0.03)}
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    imgs = {b: CLEAN * f + SIGMA * (t[0] + t[1] * (xx - TRUTH.x) + t[2] * (yy - TRUTH.y))
            + rng.normal(0, SIGMA, SHAPE) for (b, f), t in zip((("g", 0.6), ("r", 1.0)), tilt.values())}
    out = _fit(imgs, bands=("g", "r"))
    for b, (lev, gx, gy) in tilt.items():
        assert abs(out[sky_column("sersic", b)][0] - lev * SIGMA) < 3 * out[sky_column("sersic", b) + "Err"][0]
        for axis, g in (("x", gx), ("y", gy)):
            col = sky_grad_column("sersic", b, axis)
            assert abs(out[col][0] - g * SIGMA) < 3 * out[col + "Err"][0], (b, axis)
    names = {c.name for c in source_columns("sersic", ["g"])}
    assert {"g_sersic_skyGradX", "g_sersic_skyGradXErr", "g_sersic_skyGradY", "g_sersic_skyGradYErr"} <= names

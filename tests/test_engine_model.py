"""Parameter map through the bindings: profiles, scene Gaussians, chain-rule derivatives, normal equations."""

import galsim
import numpy as np
import pytest
from lsst.galmix import engine as ge
from lsst.galmix.models.ellipse import eta_from_q_pa, q_pa_from_eta
from scipy.interpolate import CubicSpline

# Every test runs under each kernel instruction set this CPU supports (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("engine_isa")

GSP = galsim.GSParams(folding_threshold=1e-10, maxk_threshold=1e-12, kvalue_accuracy=1e-14)


def made_up_spline(K: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A smooth, made-up (w~, ln s) spline in ln n (not a Sersic fit), as PPoly (x, c)."""
    x = np.log(np.linspace(0.4, 7.0, 9))
    vals = []
    for k in range(K):
        vals.append(1.0 + 0.3 * k + 0.2 * np.sin(x * (k + 1)))  # weights before normalisation
    for k in range(K):
        vals.append(-1.0 + 0.8 * k + 0.25 * np.cos(1.3 * x + k))  # ln sizes
    cs = CubicSpline(x, np.array(vals).T)
    return cs.x, cs.c


def psf_mixture(scale: float = 1.0, dx: float = 0.0) -> np.ndarray:
    return np.array([[0.75, 0.05 + dx, -0.03, 1.1 * scale, 0.08, 0.95 * scale],
                     [0.25, -0.1, 0.12, 4.5 * scale, -0.2, 5.0 * scale]])


def blend_scene():
    spline = ge.SplineProfile(*made_up_spline())
    fixed = ge.FixedProfile([0.6, 0.4], [0.7, 1.6])
    s0 = ge.Source([ge.Component(spline, "sersic"), ge.Component(fixed, "disk")])
    s1 = ge.Source([ge.Component(None, "point")])
    scene = ge.Scene([s0, s1], n_bands=2)
    # s0: x, y, [lnr, e1, e2, n], [lnr, e1, e2], F00, F01, F10, F11; s1: x, y, F0, F1
    params = np.array([15.3, 14.2, np.log(2.5), 0.3, -0.4, 2.2, np.log(3.5), -0.2, 0.15,
                       120.0, 150.0, 80.0, 60.0, 24.6, 9.1, 40.0, 70.0])
    psfs = [psf_mixture(), [psf_mixture(1.3), psf_mixture(1.2, dx=0.1)]]
    return scene, params, psfs


def test_spline_profile_matches_scipy_and_derivatives():
    x, c = made_up_spline()
    prof = ge.SplineProfile(x, c)
    assert prof.size == 3 and prof.depends_on_n
    from scipy.interpolate import PPoly

    pp = PPoly(c, x)
    for n in [0.45, 1.0, 2.7, 6.5, 8.0]:  # 8 extrapolates
        w, s, dw, ds = prof.evaluate(n)
        v = pp(np.log(n))
        np.testing.assert_allclose(w, v[:3] / v[:3].sum(), rtol=1e-13)
        np.testing.assert_allclose(s, np.exp(v[3:]), rtol=1e-13)
        h = 1e-6 * n
        wp, sp, _, _ = prof.evaluate(n + h)
        wm, sm, _, _ = prof.evaluate(n - h)
        np.testing.assert_allclose(dw, (wp - wm) / (2 * h), rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(ds, (sp - sm) / (2 * h), rtol=1e-6, atol=1e-10)
    with pytest.raises(ValueError):
        ge.SplineProfile(x, c[:, :-1])
    with pytest.raises(ValueError):
        prof.evaluate(-1.0)


def test_fixed_profile_normalises_and_validates():
    w, _, dw, ds = ge.FixedProfile([2.0, 6.0], [1.0, 2.0]).evaluate()
    np.testing.assert_allclose(w, [0.25, 0.75])
    assert np.all(dw == 0) and np.all(ds == 0)
    with pytest.raises(ValueError):
        ge.FixedProfile([1.0], [0.0])
    with pytest.raises(ValueError):
        ge.FixedProfile([1.0, 2.0], [1.0])
    # Weights whose sum overflows double precision still normalise (they used to become all zero).
    w, _, _, _ = ge.FixedProfile([1e308, 1e308, 5e307], [1.0, 2.0, 3.0]).evaluate()
    np.testing.assert_allclose(w, [0.4, 0.4, 0.2], rtol=1e-15)


def test_param_layout():
    scene, params, _ = blend_scene()
    assert scene.n_params == 17 == len(params)
    names = scene.param_names()
    assert names[:6] == ["s0.x", "s0.y", "s0.c0.lnReff", "s0.c0.eta1", "s0.c0.eta2", "s0.c0.n"]
    assert names[9:13] == ["s0.c0.flux[0]", "s0.c0.flux[1]", "s0.c1.flux[0]", "s0.c1.flux[1]"]
    assert names[13:] == ["s1.x", "s1.y", "s1.c0.flux[0]", "s1.c0.flux[1]"]
    assert scene.source_offset(1) == 13
    assert scene.flux_index(0, 1, 0) == 11 and scene.flux_index(1, 0, 1) == 16
    kinds = scene.param_kinds()
    assert kinds[5] == int(ge.ParamKind.SERSIC_N) and kinds[16] == int(ge.ParamKind.FLUX)
    idx = scene.param_index()
    assert tuple(idx[12]) == (0, 1, 1)


def test_scene_gaussians_follow_the_convention():
    """Component covariance = (s_k reff)^2 R(theta) diag(1, q^2) R(theta)^T + PSF, flux w_k F psf_frac."""
    scene, params, psfs = blend_scene()
    mix = scene.gaussians(params, 1, psfs[1])
    w, s, _, _ = ge.SplineProfile(*made_up_spline()).evaluate(params[5])
    reff = np.exp(params[2])
    q, pa = q_pa_from_eta(params[3], params[4])
    rot = np.array([[np.cos(pa), -np.sin(pa)], [np.sin(pa), np.cos(pa)]])
    psf = psfs[1][0]
    for k in range(3):
        cov = (s[k] * reff) ** 2 * rot @ np.diag([1.0, q**2]) @ rot.T
        for j in range(2):
            g = mix[2 * k + j]
            assert g[0] == pytest.approx(w[k] * params[10] * psf[j, 0], rel=1e-13)
            np.testing.assert_allclose(g[1:3], params[:2] + psf[j, 1:3], rtol=1e-14)
            np.testing.assert_allclose([g[3], g[4], g[5]], [cov[0, 0] + psf[j, 3], cov[0, 1] + psf[j, 4],
                                                            cov[1, 1] + psf[j, 5]], rtol=1e-12)
    # The point source of source 1 uses its own PSF and is the PSF scaled by the flux.
    point = mix[-2:]
    np.testing.assert_allclose(point[:, 0], params[16] * psfs[1][1][:, 0])
    np.testing.assert_allclose(point[:, 3:], psfs[1][1][:, 3:])


def test_scene_image_matches_galsim_sheared_gaussians():
    """Independent check of the shape convention with GalSim's shear (q, beta), PSF convolution by GalSim."""
    fixed = ge.FixedProfile([0.6, 0.4], [0.7, 1.6])
    scene = ge.Scene([ge.Source([ge.Component(fixed)])], n_bands=1)
    q, pa, reff, flux = 0.45, 0.6, 3.0, 200.0
    e1, e2 = eta_from_q_pa(q, pa)
    params = np.array([12.4, 10.7, np.log(reff), e1, e2, flux])
    psf = psf_mixture()
    img = ge.scene_image(scene, params, 0, psf, (24, 26), x0=-2.0, y0=1.0)
    comps = []
    for w, s in [(0.6, 0.7), (0.4, 1.6)]:
        # GalSim's shear preserves area: sigma sqrt(q) gives major-axis sigma = s reff.
        g = galsim.Gaussian(sigma=s * reff * np.sqrt(q), flux=w * flux, gsparams=GSP)
        comps.append(g.shear(q=q, beta=pa * galsim.radians))
    psf_obj = galsim.Sum([galsim.Gaussian(sigma=1.0, gsparams=GSP).transform(
        *np.linalg.cholesky([[p[3], p[4]], [p[4], p[5]]]).ravel()).withFlux(p[0]).shift(p[1], p[2]) for p in psf])
    obj = galsim.Convolve(galsim.Sum(comps), psf_obj, gsparams=GSP).shift(12.4, 10.7)
    ref = galsim.ImageD(galsim.BoundsI(-2, 23, 1, 24), scale=1.0)
    obj.drawImage(image=ref, method="no_pixel", center=galsim.PositionD(0.0, 0.0))
    assert np.abs(img - ref.array).max() <= 1e-9 * ref.array.max()


def test_gaussian_derivatives_match_finite_differences():
    scene, params, psfs = blend_scene()
    for band in (0, 1):
        dmix = scene.gaussian_derivatives(params, band, psfs[band])
        for p in range(scene.n_params):
            h = 1e-5 * max(abs(params[p]), 0.1)
            up, dn = params.copy(), params.copy()
            up[p] += h
            dn[p] -= h
            fd = (scene.gaussians(up, band, psfs[band]) - scene.gaussians(dn, band, psfs[band])) / (2 * h)
            np.testing.assert_allclose(dmix[:, :, p], fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max() + 1e-12,
                                       err_msg=scene.param_names()[p])


def make_bands(scene, params, psfs, shape=(30, 32), seed=5, mask=True):
    rng = np.random.default_rng(seed)
    bands = []
    for b in range(scene.n_bands):
        model = ge.scene_image(scene, params, b, psfs[b], shape, x0=1.0, y0=-1.0)
        sigma = 0.5 + rng.uniform(0, 1, shape)
        data = model + rng.normal(0, 1, shape) * sigma
        sinv = 1.0 / sigma
        if mask:
            sinv[4:9, 10:25] = 0.0
            data[4:9, 10:25] = np.nan
        bands.append(ge.Band(data, sinv, psf=psfs[b], x0=1.0, y0=-1.0))
    return bands


def test_scene_normal_equations_match_explicit_jacobian():
    scene, params, psfs = blend_scene()
    bands = make_bands(scene, params, psfs)
    chi2, grad, H, b = scene.normal_equations(params, bands)
    shape = bands[0].image.shape
    H_ref = np.zeros_like(H)
    b_ref = np.zeros_like(b)
    chi2_ref = 0.0
    for band_index, band in enumerate(bands):
        cols = []
        for p in range(scene.n_params):
            h = 1e-5 * max(abs(params[p]), 0.1)
            up, dn = params.copy(), params.copy()
            up[p] += h
            dn[p] -= h
            im = [ge.scene_image(scene, v, band_index, psfs[band_index], shape, 1.0, -1.0) for v in (up, dn)]
            cols.append(((im[0] - im[1]) / (2 * h)).ravel())
        J = np.array(cols).T
        w = (band.sigma_inv**2).ravel()
        keep = w > 0
        r = (band.image - ge.scene_image(scene, params, band_index, psfs[band_index], shape, 1.0, -1.0)).ravel()
        H_ref += (J[keep].T * w[keep]) @ J[keep]
        b_ref += J[keep].T @ (w[keep] * r[keep])
        chi2_ref += np.sum(w[keep] * r[keep] ** 2)
    assert chi2 == pytest.approx(chi2_ref, rel=1e-12)
    assert scene.chi2(params, bands) == pytest.approx(chi2_ref, rel=1e-12)
    np.testing.assert_allclose(H, H_ref, rtol=1e-6, atol=1e-7 * np.abs(np.diag(H_ref)).max())
    np.testing.assert_allclose(b, b_ref, rtol=1e-6, atol=1e-7 * np.abs(b_ref).max())
    # Gradient of chi2 by central differences.
    for p in range(scene.n_params):
        h = 1e-6 * max(abs(params[p]), 0.1)
        up, dn = params.copy(), params.copy()
        up[p] += h
        dn[p] -= h
        fd = (scene.chi2(up, bands) - scene.chi2(dn, bands)) / (2 * h)
        assert grad[p] == pytest.approx(fd, rel=1e-6, abs=1e-9 * chi2), scene.param_names()[p]
    # Inactive parameters get zero rows and columns; the others are unchanged.
    active = np.ones(scene.n_params, bool)
    active[[0, 5, 12]] = False
    _, _, Ha, ba = scene.normal_equations(params, bands, active)
    assert np.all(Ha[~active] == 0) and np.all(Ha[:, ~active] == 0) and np.all(ba[~active] == 0)
    np.testing.assert_allclose(Ha[np.ix_(active, active)], H[np.ix_(active, active)], rtol=1e-13)


def test_scene_input_errors():
    scene, params, psfs = blend_scene()
    bands = make_bands(scene, params, psfs, mask=False)
    with pytest.raises(ValueError, match="parameter vector"):
        scene.chi2(params[:-1], bands)
    with pytest.raises(ValueError, match="one BandData per band"):
        scene.chi2(params, bands[:1])
    with pytest.raises(ValueError, match="one PSF mixture per source"):
        scene.gaussians(params, 1, [psf_mixture()] * 3)
    with pytest.raises(ValueError, match="does not match"):
        ge.Band(np.zeros((5, 5)), np.ones((5, 4)), psf=psf_mixture())
    bad = params.copy()
    bad[5] = -1.0  # Sersic index must be positive
    with pytest.raises(ValueError):
        scene.chi2(bad, bands)
    data = bands[0].image.copy()
    data[0, 0] = np.nan
    with pytest.raises(ValueError, match="image value"):
        scene.chi2(params, [ge.Band(data, bands[0].sigma_inv, psf=psfs[0]), bands[1]])


def test_none_is_refused_with_type_error():
    """None where a Scene or Band is taken used to dereference a null pointer (SIGSEGV)."""
    scene, params, psfs = blend_scene()
    bands = make_bands(scene, params, psfs)
    with pytest.raises(TypeError):
        ge.fit(None, bands, params)
    with pytest.raises(TypeError, match=r"bands\[1\] is None"):
        ge.fit(scene, [bands[0], None], params)
    with pytest.raises(TypeError, match=r"bands\[0\] is None"):
        scene.chi2(params, [None, bands[1]])
    with pytest.raises(TypeError, match="is None"):
        scene.normal_equations(params, [None, None])
    with pytest.raises(TypeError, match="is None"):
        ge.FitProblem(scene, [None, bands[1]], params)
    with pytest.raises(TypeError):
        ge.FitProblem(None, bands, params)
    with pytest.raises(TypeError, match="psf is None"):
        scene.gaussians(params, 0, None)
    with pytest.raises(TypeError):
        ge.Band(None, psf=psfs[0])


def test_indices_are_range_checked():
    scene, params, psfs = blend_scene()
    assert scene.source_offset(1) == 13
    for s in (2, -1, 2**31 - 1, -(2**31)):
        with pytest.raises(IndexError, match="source index"):
            scene.source_offset(s)
    with pytest.raises(IndexError, match="source index"):
        scene.flux_index(5, 0, 0)
    with pytest.raises(IndexError, match="component index"):
        scene.flux_index(1, 1, 0)
    with pytest.raises(IndexError, match="band index"):
        scene.flux_index(0, 0, 2)
    out = np.zeros((10, 10))
    with pytest.raises(IndexError, match=r"band index 2 is out of range \[0, 2\)"):
        scene.image(params, 2, psfs[0], out)
    with pytest.raises(IndexError, match="band index"):
        scene.gaussians(params, -1, psfs[0])
    with pytest.raises(IndexError, match="band index"):
        scene.gaussian_derivatives(params, 7, psfs[0])


def test_covariance_with_overflowing_determinant_is_rejected():
    """xx = yy = 1e200 passed the positive-definite test (inf > 0) and made pixel ranges NaN."""
    data = np.zeros((8, 9))
    huge = np.array([[1.0, 4.0, 4.0, 1e200, 0.0, 1e200]])
    for call in (lambda: ge.chi2(huge, data), lambda: ge.render(huge, data.copy()),
                 lambda: ge.normal_equations(huge, np.zeros((1, 6, 1)), data)):
        with pytest.raises(ValueError, match="determinant .* overflows"):
            call()
    # Nearly singular (determinant lost to rounding) and an overflowing inverse are refused too.
    with pytest.raises(ValueError, match="too close to singular"):
        ge.chi2(np.array([[1.0, 4.0, 4.0, 1.0, 1.0 - 1e-15, 1.0]]), data)
    with pytest.raises(ValueError, match="inverse overflows|too close to singular"):
        ge.chi2(np.array([[1.0, 4.0, 4.0, 1e-310, 0.0, 1e10]]), data)
    # A scene whose size overflows the covariance: a ValueError, and fit() reports it as a status.
    scene = ge.Scene([ge.Source([ge.Component(ge.FixedProfile([1.0], [1.0]))])])
    params = np.array([4.0, 4.0, 200.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="model Gaussian 0 .*overflows"):
        scene.chi2(params, [ge.Band(data, psf=psf_mixture())])


def test_huge_inverse_sigma_says_what_is_wrong():
    data = np.zeros((6, 7))
    sinv = np.ones_like(data)
    sinv[2, 3] = 1e200
    mix = np.array([[1.0, 3.0, 3.0, 1.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"inverse sigma at \[2, 3\] is 1e\+200: too large .*variance"):
        ge.chi2(mix, data, sinv)
    scene = ge.Scene([ge.Source([ge.Component(None)])])
    band = ge.Band(data, sinv, psf=mix)
    with pytest.raises(ValueError, match="too large"):
        scene.chi2(np.array([3.0, 3.0, 1.0]), [band])
    res = ge.fit(scene, [band], np.array([3.0, 3.0, 1.0]))
    assert res.status == ge.FitStatus.ERROR and "too large" in res.message


def test_overflowing_model_raises_instead_of_returning_inf():
    data = np.zeros((6, 7))
    bright = np.array([[1e307, 3.0, 3.0, 1e-3, 0.0, 1e-3]])
    with pytest.raises(ValueError, match="overflows double precision"):
        ge.render(bright, np.zeros((6, 7)))
    with pytest.raises(ValueError, match="overflow"):
        ge.chi2(bright, data)
    with pytest.raises(ValueError, match="must be finite"):
        ge.render(np.array([[1.0, 3.0, 3.0, 1.0, 0.0, 1.0]]), data, np.nan, 0.0)


def test_misaligned_arrays_are_copied_or_refused():
    """Unaligned loads are undefined behaviour: inputs are copied, an output is refused."""
    buf = bytearray(8 * 42 + 1)
    data = np.frombuffer(buf, dtype=np.float64, offset=1, count=42).reshape(6, 7)
    assert not data.flags.aligned
    mix = np.array([[1.0, 3.0, 3.0, 1.0, 0.0, 1.0]])
    assert ge.chi2(mix, data) == pytest.approx(ge.chi2(mix, np.zeros((6, 7))))
    mbuf = bytearray(8 * 6 + 1)
    mis_mix = np.frombuffer(mbuf, dtype=np.float64, offset=1, count=6)
    mis_mix[:] = mix[0]
    assert ge.chi2(mis_mix, np.zeros((6, 7))) == pytest.approx(ge.chi2(mix, np.zeros((6, 7))))
    with pytest.raises(ValueError, match="not aligned"):
        ge.render(mix, data)


def test_gaussian_conversions_refuse_overflow():
    with pytest.raises(ValueError, match="overflows"):
        ge.gaussian_to_sigma([0.0, 0.0, 0.0, 1e308, 1e308, 5e-324])
    with pytest.raises(ValueError, match="overflow"):
        ge.gaussian_from_sigma(1.0, 0.0, 0.0, 1e200, 1.0, 0.0)
    with pytest.raises(ValueError, match="too far outside|weights sum to <= 0"):
        ge.SplineProfile(*made_up_spline()).evaluate(1e308)
    assert np.isfinite(eta_from_q_pa(0.5, 1e308)).all()


def test_extreme_ellipticity_gives_finite_derivatives():
    """|eta| = 1e308 made 2|eta| and |eta|^2 overflow in the shape derivatives (NaN)."""
    scene = ge.Scene([ge.Source([ge.Component(ge.FixedProfile([1.0], [1.0]))])])
    for e1, e2 in [(1e308, 0.0), (0.0, -1e308), (1e200, 1e200), (400.0, 0.0)]:
        d = scene.gaussian_derivatives(np.array([5.0, 5.0, 0.0, e1, e2, 1.0]), 0, psf_mixture())
        assert np.isfinite(d).all()

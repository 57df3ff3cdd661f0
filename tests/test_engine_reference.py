"""The C++ scene against the independent numpy reference (tests/reference): layout, images, chi2, gradients, fits.

The package draws and fits every model through the engine (`lsst.galmix.fitting.engine_backend`); the
reference computes the same from its own parameter map and pixel evaluation, so these tests would catch
an engine and a layout that drifted from the model definitions together.
"""

import numpy as np
import pytest
from lsst.galmix import engine as ge
from lsst.galmix.fitting import engine_backend as eb
from lsst.galmix.fitting.config import FitSettings
from lsst.galmix.fitting.moments import adaptive_moments
from lsst.galmix.fitting.optimize import BandInput, SourceSpec
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import initial_theta
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp
from lsst.galmix.models.definitions import MODELS, ModelDef, get_model
from reference.optimize import band_data, fit_model, model_jacobian
from reference.render import component_gaussians, render

PSF = moffat_psf(3.5)
# Four Gaussians with free centres: PSF offsets enter every comparison.
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
MIX_WIDE = fit_psf_image(psf_kernel(moffat_psf(5.0), 41), 2).mixture


def _theta(model: ModelDef, x: float, y: float, shift: float = 0.0) -> np.ndarray:
    """Plausible nonlinear parameters of a model (sizes of its components different)."""
    theta = [x, y] if model.free_centroid else []
    for k, comp in enumerate(model.components):
        if comp.has_shape:
            theta += [np.log(2.5) - 0.6 * k + shift, 0.3 - 0.2 * k, -0.2 + 0.4 * k]
            if comp.free_n:
                theta.append(2.2 + 0.5 * k)
    return np.array(theta, float)


def _fluxes(model: ModelDef, scale: float = 1.0) -> np.ndarray:
    return scale * np.array([700.0, 300.0][: len(model.components)])


@pytest.mark.parametrize("name", list(MODELS))
def test_theta_is_the_engine_layout_selected_by_kind(name):
    """``theta`` of each source holds the scene's parameters of the kinds `ModelDef.nonlinear_kinds` lists."""
    model = get_model(name)
    by_name = {"x": ge.ParamKind.X, "y": ge.ParamKind.Y, "ln_reff": ge.ParamKind.LN_REFF,
               "eta1": ge.ParamKind.ETA1, "eta2": ge.ParamKind.ETA2, "n": ge.ParamKind.SERSIC_N}
    assert model.nonlinear_kinds == tuple(by_name[n.split(".")[-1]] for n in model.nonlinear_names)
    specs = [SourceSpec(model, (20.4, 18.7)), SourceSpec(get_model("point"), (12.0, 30.0)),
             SourceSpec(model, (28.0, 25.5))]
    theta = np.concatenate([_theta(model, 20.4, 18.7), [12.0, 30.0], _theta(model, 28.0, 25.5, 0.1)])
    bands = [BandInput(np.zeros((40, 44)), np.ones((40, 44)), 0, 0, MIX), None,
             BandInput(np.zeros((40, 44)), np.ones((40, 44)), 0, 0, MIX_WIDE)]
    p = eb.make_problem(specs, theta, bands, FitSettings())
    kinds = np.asarray(p.scene.param_kinds())
    expected = [int(k) for spec in specs for k in spec.model.nonlinear_kinds]
    assert kinds[p.theta_index].tolist() == expected
    assert (kinds[p.flux_index] == int(ge.ParamKind.FLUX)).all() and len(p.flux_index) == 2 * (
        2 * len(model.components) + 1)
    # Fixed centres are fixed engine parameters at the specs' positions; everything else is free.
    assert p.free.sum() == len(theta) + len(p.flux_index)
    _, params = eb._scene_params(specs, theta, np.zeros((2, 2 * len(model.components) + 1)))
    np.testing.assert_array_equal(params[p.theta_index], theta)
    for s, spec in enumerate(specs):
        off = p.scene.source_offset(s)
        if not spec.model.free_centroid:
            assert tuple(params[off : off + 2]) == spec.xy_fixed and not p.free[off : off + 2].any()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mix", [MIX, MIX_WIDE], ids=["psf4", "psf2"])
def test_engine_images_match_the_reference(name, mix):
    model = get_model(name)
    xy = (23.3, 19.6)
    theta, fluxes = _theta(model, *xy), _fluxes(model)
    engine = eb.render_sources([SourceSpec(model, xy)], theta, fluxes, mix, (40, 44), (3, -2))
    ref = render(model, theta, fluxes, mix, (40, 44), (3, -2), xy)
    np.testing.assert_allclose(engine, ref, rtol=1e-9, atol=1e-12 * ref.max())
    # The Gaussians behind the image, in the same (component, profile, PSF) order.
    gauss = eb.convolved_gaussians([SourceSpec(model, xy)], theta, fluxes, mix)
    ref_g = np.concatenate([g * np.array([f, 1, 1, 1, 1, 1]) for g, f in
                            zip(component_gaussians(model, theta, xy, mix), fluxes)])
    np.testing.assert_allclose(gauss, ref_g, rtol=1e-10, atol=1e-12 * np.abs(ref_g).max())


def test_model_stamps_of_several_sources_and_bands_match_the_reference():
    specs = [SourceSpec(get_model("sersic"), (0.0, 0.0)), SourceSpec(get_model("expdevFixedCen"), (45.0, 38.0))]
    theta = np.concatenate([[40.3, 39.8, np.log(2.5), 0.2, -0.1, 2.2], _theta(specs[1].model, 0, 0)])
    fluxes = np.array([[700.0, 500.0, 200.0], [np.nan] * 3, [900.0, 100.0, 400.0]])
    bands = [BandInput(np.zeros((30, 40)), np.ones((30, 40)), 20, 25, MIX), None,
             BandInput(np.zeros((35, 30)), np.ones((35, 30)), 25, 22, MIX_WIDE)]
    engine = eb.model_stamps(specs, theta, fluxes, bands)
    assert engine[1] is None
    for b in (0, 2):
        band = bands[b]
        ref = sum(render(spec.model, th, f, band.psf, band.image.shape, (band.x0, band.y0), spec.xy_fixed)
                  for spec, th, f in ((specs[0], theta[:6], fluxes[b, :1]), (specs[1], theta[6:], fluxes[b, 1:])))
        np.testing.assert_allclose(engine[b], ref, rtol=1e-9, atol=1e-12 * ref.max())


@pytest.mark.parametrize("name", ["sersic", "expdevFixedCen", "ptsersic", "gauss"])
def test_engine_chi2_gradient_and_normal_matrix_match_the_reference(name):
    """chi2, its gradient and J^T W J of a joint two-source, two-band scene with masked pixels."""
    model = get_model(name)
    specs = [SourceSpec(model, (18.2, 20.5)), SourceSpec(model, (27.6, 22.1))]
    theta = np.concatenate([_theta(model, 18.2, 20.5), _theta(model, 27.6, 22.1, 0.3)])
    ncomp = 2 * len(model.components)
    fluxes = np.array([np.linspace(300.0, 900.0, ncomp), np.linspace(800.0, 200.0, ncomp)])
    rng = np.random.default_rng(3)
    inputs = []
    for k, mix in enumerate((MIX, MIX_WIDE)):
        shape, origin = (38, 44), (1 + k, -1)
        image = eb.render_sources(specs, theta, fluxes[k], mix, shape, origin) + rng.normal(0, 2.0, shape)
        weight = np.full(shape, 0.25)
        weight[rng.random(shape) < 0.1] = 0.0
        inputs.append(BandInput(np.where(weight > 0, image, 0.0), weight, origin[0], origin[1], mix))
    p = eb.make_problem(specs, theta, inputs, FitSettings())
    _, params = eb._scene_params(specs, theta, fluxes)
    chi2, grad, h, b = (np.asarray(v) for v in p.scene.normal_equations(params, p.bands))
    ref_chi2, ref_b = 0.0, np.zeros(p.scene.n_params)
    ref_h = np.zeros((p.scene.n_params, p.scene.n_params))
    for k, band in enumerate(inputs):
        data = band_data(band)
        model_k, d_theta, d_flux = model_jacobian(specs, theta, fluxes[k], data)
        jac = np.zeros((data.data.size, p.scene.n_params))
        jac[:, p.theta_index] = d_theta
        jac[:, p.flux_index.reshape(2, -1)[k]] = d_flux
        wr = data.sqrtw**2 * (data.data - model_k)
        ref_chi2 += float(np.sum((data.sqrtw * (data.data - model_k)) ** 2))
        ref_b += jac.T @ wr
        ref_h += jac.T @ (data.sqrtw[:, None] ** 2 * jac)
    idx = np.concatenate([p.theta_index, p.flux_index])
    assert float(chi2) == pytest.approx(ref_chi2, rel=1e-9)
    # The reference differentiates its parameter map by central differences (~1e-9 relative).
    np.testing.assert_allclose(b[idx], ref_b[idx], rtol=1e-5, atol=1e-7 * np.abs(ref_b).max())
    np.testing.assert_allclose(grad[idx], -2.0 * ref_b[idx], rtol=1e-5, atol=2e-7 * np.abs(ref_b).max())
    hi = np.ix_(idx, idx)
    np.testing.assert_allclose(h[hi], ref_h[hi], rtol=1e-5, atol=1e-7 * np.abs(ref_h).max())


def _stamp_fit_inputs(model: ModelDef, image: np.ndarray, var: float, guess: tuple[float, float], mix,
                      n_init: float = 2.0):
    """One band over the whole image and the moments start `fit_patch` would use."""
    band = BandInput(image, np.full(image.shape, 1.0 / var), 0, 0, mix)
    mom = adaptive_moments(image, guess=guess)
    theta0 = initial_theta(model, mom.x, mom.y, mom.cov, mix.covariance(), n_init)
    return [SourceSpec(model, guess)], theta0, [band]


@pytest.mark.parametrize("name", ["sersic", "expdevFixedCen"])
def test_engine_and_reference_fits_agree(name):
    # A well-resolved bulge, so that every parameter is constrained and the minimum is unique.
    t = GalaxyTruth(30.3, 29.6, 1000.0, n=1.0, reff=5.0, q=0.6, position_angle=0.4, bulge_frac=0.4, bulge_reff=2.5)
    clean = render_stamp([t], PSF, (60, 60))
    sigma = noise_sigma_for_snr(clean, 200.0)
    img = clean + np.random.default_rng(2).normal(0, sigma, clean.shape)
    specs, theta0, bands = _stamp_fit_inputs(get_model(name), img, sigma**2, (t.x, t.y), MIX)
    settings = FitSettings(rtol=1e-12)
    engine = eb.run_problems([eb.make_problem(specs, theta0, bands, settings)])[0]
    ref = fit_model(specs, theta0, bands, settings)
    assert engine.converged and ref.converged and not (engine.singular or ref.singular)
    # The engine stops on a step below 1e-4 sigma; errors: the reference differentiates its map numerically.
    assert engine.theta == pytest.approx(ref.theta, rel=1e-4, abs=1e-6)
    assert engine.fluxes == pytest.approx(ref.fluxes, rel=1e-4)
    assert engine.chi2 == pytest.approx(ref.chi2, rel=1e-6)
    assert np.sqrt(np.diag(engine.cov)) == pytest.approx(np.sqrt(np.diag(ref.cov)), rel=1e-3)
    assert engine.at_bound == ref.at_bound
    assert (engine.unconstrained == ref.unconstrained).all()


def test_a_step_towards_the_n_bound_does_not_trap_either_fitter():
    """An exponential disk (r_e 1.7 px, q 0.56) under a Moffat of FWHM 4.6 px, started at n = 2: the first
    Gauss-Newton steps reach n = 6; with projected bounds both fitters return to n = 1."""
    psf = moffat_psf(4.6)
    mix = fit_psf_image(psf_kernel(psf, 41), 4).mixture
    t = GalaxyTruth(40.0, 40.0, 1000.0, n=1.0, reff=1.7225, q=0.5646, position_angle=np.radians(112.19))
    img = render_stamp([t], psf, (81, 81))
    specs, theta0, bands = _stamp_fit_inputs(get_model("sersic"), img, 1.0, (t.x, t.y), mix)
    for res in (eb.run_problems([eb.make_problem(specs, theta0, bands, FitSettings())])[0],
                fit_model(specs, theta0, bands, FitSettings())):
        assert res.converged and not res.at_bound
        assert res.theta[5] == pytest.approx(1.0, abs=0.01)
        assert res.fluxes[0, 0] == pytest.approx(1000.0, rel=0.002)


def test_reference_flux_below_the_noise_is_unconstrained():
    """A source with no u-band light: the reference's u fluxes scatter around zero, as the engine's do."""
    galaxy = GalaxyTruth(30.3, 29.8, 3000.0, n=1.0, reff=2.0, q=0.8, position_angle=0.3)
    clean = render_stamp([galaxy], PSF, (61, 61))
    model = get_model("exp")
    flux, err = [], []
    for seed in range(16):
        rng = np.random.default_rng(seed)
        r_img = clean + rng.normal(0, 1.0, clean.shape)
        u_img = rng.normal(0, 1.0, clean.shape)
        specs, theta0, (r_band,) = _stamp_fit_inputs(model, r_img, 1.0, (galaxy.x, galaxy.y), MIX)
        u_band = BandInput(u_img, np.ones(u_img.shape), 0, 0, MIX)
        results = [fit_model(specs, theta0, [u_band, r_band]),
                   eb.run_problems([eb.make_problem(specs, theta0, [u_band, r_band], FitSettings())])[0]]
        for res in results:
            assert res.converged and not res.singular
        n = len(results[0].theta)  # the covariance lists theta, then the u-band flux
        f, e = results[0].fluxes[0, 0], np.sqrt(results[0].cov[n, n])
        assert f == pytest.approx(results[1].fluxes[0, 0], abs=1e-3 * e)
        flux.append(f)
        err.append(e)
    flux, err = np.array(flux), np.array(err)
    assert np.isfinite(err).all() and (flux < 0).sum() >= 3 and (flux > 0).sum() >= 3
    assert abs(flux.mean()) < 4 * err.mean() / np.sqrt(len(flux))
    assert 0.5 < np.std(flux / err) < 1.6

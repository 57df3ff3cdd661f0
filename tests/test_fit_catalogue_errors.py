"""Catalogue-ready fluxes: finite errors for stars and galaxies with extended models, unconstrained fluxes."""

import numpy as np
import pytest
from lsst.galmix.fitting.config import FitSettings, SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import GalaxyTruth, make_scene, moffat_psf, psf_kernel

PSF = moffat_psf(3.5)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
BANDS = ["g", "r", "i"]
COLOURS = {"g": 0.5, "r": 1.0, "i": 1.2}


def _fit(truth, model, seed, colours=COLOURS):
    images, objects = make_scene([truth], {b: PSF for b in colours}, colours, (61, 61),
                                 {b: 1.0 for b in colours}, np.random.default_rng(seed))
    return fit_patch(images, (0, 0), objects, None, {b: MIX for b in colours}, model, SourceFitConfig())


@pytest.mark.parametrize("model", ["exp", "sersic"])
@pytest.mark.parametrize("flux", [30.0, 300.0, 3e3, 3e4, 3e5])
def test_isolated_star_has_finite_flux_errors(model, flux):
    star = GalaxyTruth(30.3, 29.8, flux, n=0)
    out = _fit(star, model, seed=int(flux))
    point = _fit(star, "point", seed=int(flux))
    assert not out[f"{model}_flag"][0]
    for b in BANDS:
        err = out[f"{b}_{model}FluxErr"][0]
        # Finite and near the point-source fit's error: the shape adds little once the source is
        # detected well (measured at S/N ~4, flux 30: up to 2.1x, the size is then barely bounded).
        limit = 3.0 if flux < 100 else 1.3
        assert np.isfinite(err) and 0.9 < err / point[f"{b}_psfFluxErr"][0] < limit, (b, err)
    # The shape the data cannot constrain has no error, and a flag says why.
    assert out[f"{model}_shape_unconstrained_flag"][0] or out[f"{model}_param_at_bound_flag"][0]
    assert np.isnan(out[f"{model}_rhoErr"][0])


@pytest.mark.parametrize("model", ["exp", "sersic"])
@pytest.mark.parametrize("reff", [0.7, 3.0])
def test_isolated_galaxy_has_finite_flux_errors(model, reff):
    galaxy = GalaxyTruth(30.3, 29.8, 2000.0, n=1.0, reff=reff, q=0.6, position_angle=0.3)
    out = _fit(galaxy, model, seed=5)
    assert not out[f"{model}_flag"][0]
    for b in BANDS:
        assert np.isfinite(out[f"{b}_{model}FluxErr"][0])
    if reff == 3.0:  # resolved: every shape parameter is measured
        assert not out[f"{model}_shape_unconstrained_flag"][0]
        assert np.isfinite(out[f"{model}_reff_xErr"][0]) and np.isfinite(out[f"{model}_rhoErr"][0])


def test_flux_below_the_noise_is_unconstrained():
    """A source with no u-band light: its u fluxes scatter around zero, negative about half the time
    (the numpy reference: test_engine_reference.py)."""
    colours = {"u": 0.0, "r": 1.0}
    galaxy = GalaxyTruth(30.3, 29.8, 3000.0, n=1.0, reff=2.0, q=0.8, position_angle=0.3)
    flux, err = [], []
    for seed in range(16):
        out = _fit(galaxy, "exp", seed, colours)
        assert not out["exp_flag"][0]
        flux.append(out["u_expFlux"][0])
        err.append(out["u_expFluxErr"][0])
    flux, err = np.array(flux), np.array(err)
    assert np.isfinite(err).all() and (flux < 0).sum() >= 3 and (flux > 0).sum() >= 3
    # Consistent with zero: mean within 4 sigma of its error, chi spread of order 1.
    assert abs(flux.mean()) < 4 * err.mean() / np.sqrt(len(flux))
    assert 0.5 < np.std(flux / err) < 1.6


def test_a_source_without_information_does_not_spoil_its_neighbours_errors():
    """Joint fit of two point sources, the second one's model off the pixels: only its errors are NaN."""
    from lsst.galmix.engine import ParamKind
    from lsst.galmix.fitting.errors import conditional_covariance
    from lsst.galmix.fitting.optimize import ParameterBounds

    kinds = [ParamKind.X, ParamKind.Y, ParamKind.X, ParamKind.Y]
    rng = np.random.default_rng(1)
    jac = rng.normal(size=(200, 6))  # [x1, y1, x2, y2, f1, f2]
    jac[:, [2, 3, 5]] = 0.0  # the second source puts no light on any pixel
    fisher = jac.T @ jac
    cov, singular, held = conditional_covariance(ParameterBounds(kinds, FitSettings()), fisher,
                                                 np.zeros(4), kinds)
    var = np.diag(cov)
    assert not singular and np.isfinite(var[[0, 1, 4]]).all() and np.isnan(var[[2, 3, 5]]).all()
    assert list(held) == [False, False, True, True]
    np.testing.assert_allclose(var[[0, 1, 4]], np.diag(np.linalg.inv(fisher[np.ix_([0, 1, 4], [0, 1, 4])])))

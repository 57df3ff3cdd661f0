"""Refits that start from a fitted solution start with little damping (`FitSettings.warm_lambda0`) and
from its fluxes (`Prepared.fluxes0`)."""

import numpy as np
from lsst.galmix.fitting import engine_backend as eb
from lsst.galmix.fitting import source
from lsst.galmix.fitting.config import FitSettings, SourceFitConfig
from lsst.galmix.fitting.optimize import BandInput, SourceSpec
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import (
    GalaxyTruth,
    make_scene,
    moffat_psf,
    noise_sigma_for_snr,
    psf_kernel,
    render_stamp,
)
from lsst.galmix.models.definitions import get_model

PSF = moffat_psf(3.0)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture


def _band(shape, truth, snr, seed):
    clean = render_stamp([truth], PSF, shape)
    sigma = noise_sigma_for_snr(clean, snr)
    image = clean + np.random.default_rng(seed).normal(0.0, sigma, shape)
    return BandInput(image, np.full(shape, sigma**-2), 0, 0, MIX)


def test_a_warm_refit_takes_fewer_steps_to_the_same_minimum():
    # A fit on a small stamp, then the refit on a grown one from its solution (what `_grow_stamps` does):
    # started warm, the refit takes fewer steps, and both refits reach the same minimum.
    truth = GalaxyTruth(30.3, 29.8, 1000.0, n=3.0, reff=5.0, q=0.6, position_angle=0.5)
    spec = [SourceSpec(get_model("sersic"), (30.0, 30.0))]
    settings = FitSettings()
    grown = _band((61, 61), truth, 300.0, 1)
    small = BandInput(grown.image[15:46, 15:46], grown.weight[15:46, 15:46], 15, 15, MIX)
    theta0 = np.array([30.0, 30.0, np.log(4.0), 0.0, 0.0, 1.5])
    (first,) = eb.run_problems([eb.make_problem(spec, theta0, [small], settings)])
    cold, warm = eb.run_problems(
        [eb.make_problem(spec, first.theta, [grown], settings, warm=w) for w in (False, True)])
    assert cold.converged and warm.converged
    assert warm.n_iter < cold.n_iter
    errors = np.sqrt(np.diag(cold.cov))
    assert np.all(np.abs(warm.theta - cold.theta) < 0.05 * errors[: len(warm.theta)])
    assert abs(warm.chi2 - cold.chi2) < 0.01


def test_warm_lambda0_is_the_setting():
    # The damping is the setting's: a warm start with the cold damping (1) repeats the cold fit exactly.
    truth = GalaxyTruth(20.2, 19.9, 800.0, n=1.0, reff=3.0, q=0.8, position_angle=1.0)
    spec = [SourceSpec(get_model("sersic"), (20.0, 20.0))]
    band = _band((41, 41), truth, 100.0, 2)
    theta0 = np.array([20.0, 20.0, np.log(3.5), 0.1, 0.0, 1.2])
    settings = FitSettings()
    settings.warm_lambda0 = 1.0
    cold, warm = eb.run_problems(
        [eb.make_problem(spec, theta0, [band], settings, warm=w) for w in (False, True)])
    assert cold.n_iter == warm.n_iter
    assert np.array_equal(cold.theta, warm.theta)
    settings.warm_lambda0 = 1e-2
    (quick,) = eb.run_problems([eb.make_problem(spec, theta0, [band], settings, warm=True)])
    assert not np.array_equal(quick.theta, cold.theta)


def test_refits_on_grown_stamps_start_from_the_fitted_fluxes(monkeypatch):
    # A bright concentrated galaxy outgrows its first stamp: its refit (warm) is given the first fit's
    # fluxes, which the engine linearises at instead of solving them in a pass of its own.
    truth = GalaxyTruth(40.2, 39.7, 20000.0, n=3.5, reff=4.0, q=0.7, position_angle=0.3)
    images, objects = make_scene([truth], {"g": PSF, "r": PSF}, {"g": 0.6, "r": 1.0}, (80, 80),
                                 {"g": 1.0, "r": 1.0}, np.random.default_rng(4))
    seen: list[tuple[source.Prepared, list[source.SourceOutcome]]] = []
    solve = source.solve

    def recording(prepared, settings, n_threads=1):
        outcomes = solve(prepared, settings, n_threads)
        seen.extend(zip(prepared, outcomes))
        return outcomes

    monkeypatch.setattr("lsst.galmix.fitting.stages.solve", recording)
    monkeypatch.setattr("lsst.galmix.fitting.blend.solve", recording)
    table = fit_patch(images, (0, 0), objects, None, {"g": MIX, "r": MIX}, "sersic", SourceFitConfig())
    assert table["sersic_flag"][0] == 0
    (first, first_out), (refit, _) = seen[0], seen[1]
    assert not first.warm and first.fluxes0 is None
    assert refit.warm and refit.bands[1].image.size > first.bands[1].image.size
    assert np.array_equal(refit.fluxes0, np.concatenate([o.fluxes for o in first_out], axis=1))
    problem = eb.make_problem(refit.specs, refit.theta0, refit.bands, FitSettings(), warm=True,
                              fluxes0=refit.fluxes0)
    assert problem.problem.params0[problem.flux_index].tolist() == refit.fluxes0.ravel().tolist()

"""Error calibration: over noise realisations, std((fit - ref) / error) is within 10% of 1 for flux and reff.

S/N is the catalogue S/N of the fitted model, ``flux / fluxErr`` of the noiseless fit
(`noise_sigma_for_flux_snr`; doc/conventions.rst). Every unflagged fit counts, including those with a
parameter at a bound (their errors are conditional on it: `ParameterBounds.covariance`). ``ref`` is the fit of the
noiseless image, so the pulls test the errors and not the model's mismatch with the profile.
Figures for more sizes, indices and both S/N definitions: ``benchmarks/bench_pulls.py``, doc/fitting.rst.
"""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.engine import ParamKind
from lsst.galmix.fitting.config import FitSettings, SourceFitConfig
from lsst.galmix.fitting.optimize import ParameterBounds, invert_fisher
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import (
    GalaxyTruth,
    moffat_psf,
    noise_sigma_for_flux_snr,
    noise_sigma_for_snr,
    psf_kernel,
    render_stamp,
)

PSF = moffat_psf(3.5)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
CFG = SourceFitConfig(stamp_min=16, stamp_max=16)
N_REAL = 300


def _objects(t: GalaxyTruth) -> Table:
    obj = Table({"objectId": [1], "x": [t.x], "y": [t.y]})
    obj["shape_xx"], obj["shape_yy"], obj["shape_xy"] = [14.0], [11.0], [0.5]
    return obj


def _pulls(model: str, n: float, snr: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray, int]:
    """Flux and reff pulls of the unflagged fits with finite errors, and the number of fits at a bound."""
    t = GalaxyTruth(20.0, 20.0, 1000.0, n=n, reff=3.0, q=0.7, position_angle=0.2)
    clean = render_stamp([t], PSF, (41, 41))
    obj = _objects(t)
    sigma = noise_sigma_for_flux_snr(clean, snr, obj, MIX, model, CFG)
    var = np.full(clean.shape, sigma**2)
    ref = fit_patch({"r": (clean, var, None)}, (0, 0), obj, None, {"r": MIX}, model, CFG)
    assert ref[f"r_{model}Flux"][0] / ref[f"r_{model}FluxErr"][0] == pytest.approx(snr, rel=1e-6)
    rng = np.random.default_rng(seed)
    rows, n_bound = [], 0
    for _ in range(N_REAL):
        out = fit_patch({"r": (clean + rng.normal(0, sigma, clean.shape), var, None)}, (0, 0), obj, None,
                        {"r": MIX}, model, CFG)
        n_bound += int(out[f"{model}_param_at_bound_flag"][0])
        if not out[f"{model}_flag"][0]:
            rows.append((out[f"r_{model}Flux"][0], out[f"r_{model}FluxErr"][0], out[f"{model}_reff"][0],
                         out[f"{model}_reffErr"][0]))
    f, fe, r, re = np.array(rows).T
    ok = np.isfinite(fe) & np.isfinite(re)
    assert ok.sum() > 0.97 * N_REAL
    return ((f - ref[f"r_{model}Flux"][0]) / fe)[ok], ((r - ref[f"{model}_reff"][0]) / re)[ok], n_bound


@pytest.mark.parametrize(
    "model,n",
    [("gauss", 0.5), ("exp", 1.0), ("dev", 4.0), ("sersic", 1.5), ("sersic", 4.0), ("sersic", 0.7)],
)
def test_errors_calibrated_at_snr_20(model, n):
    """Measured (seed 7, 300 fits): spreads 0.93-1.05; n = 0.7 has ~1/6 of its fits at n = 0.5."""
    pull_f, pull_r, n_bound = _pulls(model, n, 20.0)
    if model == "sersic" and n == 0.7:
        assert n_bound > 0.1 * N_REAL  # the case the conditional errors at a bound are for
    assert np.std(pull_f) == pytest.approx(1.0, abs=0.1)
    assert np.std(pull_r) == pytest.approx(1.0, abs=0.1)
    assert abs(np.mean(pull_f)) < 0.25 and abs(np.mean(pull_r)) < 0.25


def test_flux_snr_is_below_optimal_snr_by_the_shape_information():
    """The catalogue S/N of a model is the optimal S/N only for a point source with a known position."""
    t = GalaxyTruth(20.0, 20.0, 1000.0, n=1.5, reff=3.0, q=0.7, position_angle=0.2)
    clean = render_stamp([t], PSF, (41, 41))
    optimal = np.sqrt((clean**2).sum())
    ratios = {m: optimal / noise_sigma_for_flux_snr(clean, 1.0, _objects(t), MIX, m, CFG) for m in ("exp", "sersic")}
    # More free shape parameters, more of the image's information goes to them: lower flux S/N.
    assert 1.0 < ratios["exp"] < ratios["sersic"]
    assert noise_sigma_for_snr(clean, 20.0) == pytest.approx(optimal / 20.0)


def test_covariance_at_a_bound_is_conditional_on_it():
    """A parameter at its bound is held fixed: the others' covariance inverts the Fisher matrix without it."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 4))
    fisher = a.T @ a + np.eye(4)
    settings = FitSettings()
    bounds = ParameterBounds([ParamKind.X, ParamKind.LN_REFF, ParamKind.SERSIC_N, ParamKind.FLUX], settings)
    mask = bounds.fixed_for_errors(np.array([3.0, 0.0, settings.n_bounds[0], 10.0]))
    assert mask.tolist() == [False, False, True, False]
    # n at its upper bound (a flat likelihood) is flagged but marginalised over; reff at a bound is fixed.
    upper = np.array([3.0, np.log(settings.reff_bounds[0]), settings.n_bounds[1], 10.0])
    assert bounds.at_bound(upper) and bounds.fixed_for_errors(upper).tolist() == [False, True, False, False]
    cov, singular = invert_fisher(fisher, mask)
    keep = [0, 1, 3]
    assert not singular
    np.testing.assert_allclose(cov[np.ix_(keep, keep)], np.linalg.inv(fisher[np.ix_(keep, keep)]), rtol=1e-10)
    assert np.isnan(cov[2, 2]) and (cov[2, keep] == 0).all()
    # Conditional variances never exceed the marginal ones.
    full, _ = invert_fisher(fisher)
    assert (np.diag(cov)[keep] <= np.diag(full)[keep]).all()


def test_index_uncertainty_is_capped_at_its_distance_from_the_lower_bound():
    """Errors are continuous across the lower bound of n: fixed at it, marginal from one sigma above."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(8, 4))
    fisher = a.T @ a + np.eye(4)  # rows: x, ln_reff, n, then one flux
    settings = FitSettings()
    bounds = ParameterBounds([ParamKind.X, ParamKind.LN_REFF, ParamKind.SERSIC_N], settings)
    full, _ = invert_fisher(fisher)
    sigma_n = np.sqrt(full[2, 2])
    n_min = settings.n_bounds[0]

    def cov_at(n: float) -> np.ndarray:
        return bounds.covariance(fisher, np.array([3.0, 0.0, n]))[0]

    far, at, half = cov_at(n_min + 2 * sigma_n), cov_at(n_min), cov_at(n_min + 0.5 * sigma_n)
    np.testing.assert_allclose(far, full, rtol=1e-12)
    conditional = np.linalg.inv(fisher[np.ix_([0, 1, 3], [0, 1, 3])])
    np.testing.assert_allclose(at[np.ix_([0, 1, 3], [0, 1, 3])], conditional, rtol=1e-10)
    # Half a sigma above the bound, n keeps a quarter of its variance and of its share of the others'.
    assert half[2, 2] == pytest.approx(0.25 * full[2, 2])
    expected_flux_var = conditional[2, 2] + 0.25 * (full[3, 3] - conditional[2, 2])
    assert half[3, 3] == pytest.approx(expected_flux_var)
    # Near n = 6 nothing is capped.
    np.testing.assert_allclose(cov_at(settings.n_bounds[1] - 0.1 * sigma_n), full, rtol=1e-12)

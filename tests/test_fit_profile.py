"""Profile-likelihood errors of reff: calibrated where the Fisher errors of a free-index Sersic are not."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.profile import reff_profile_errors
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp

PSF = moffat_psf(3.5)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
TRUTH = GalaxyTruth(20.0, 20.0, 1000.0, n=1.5, reff=3.0, q=0.7, position_angle=0.2)
CFG = SourceFitConfig(stamp_min=16, stamp_max=16, sky="none")  # calibration measured without a sky


def _objects() -> Table:
    obj = Table({"objectId": [1], "x": [TRUTH.x], "y": [TRUTH.y]})
    obj["shape_xx"], obj["shape_yy"], obj["shape_xy"] = [14.0], [11.0], [0.5]
    return obj


def test_profile_errors_bracket_fisher_error_at_high_snr():
    """At S/N 100 the likelihood is Gaussian: both profile half-widths equal the Fisher error."""
    clean = render_stamp([TRUTH], PSF, (41, 41))
    sigma = noise_sigma_for_snr(clean, 100.0)
    img = clean + np.random.default_rng(3).normal(0, sigma, clean.shape)
    images = {"r": (img, np.full(img.shape, sigma**2), None)}
    out = fit_patch(images, (0, 0), _objects(), None, {"r": MIX}, "sersic", CFG)
    lo, hi = reff_profile_errors(images, (0, 0), _objects(), {"r": MIX}, "sersic", out, CFG)
    err = out["sersic_reffErr"][0]
    assert lo[0] == pytest.approx(err, rel=0.1) and hi[0] == pytest.approx(err, rel=0.1)
    assert lo[0] < hi[0]  # larger sizes are less constrained (the error is ~constant in ln reff)


def test_profile_errors_calibrated_at_snr_20_where_fisher_is_not():
    """Spread of (ln fit - ln ref) / (ln error on the side of the reference) over 400 realisations at S/N 20.

    Measured (doc/fitting.rst): Fisher 0.84, profile 0.94 (fits with n at a bound excluded, as in
    the Fisher test before its errors at a bound were made conditional). The mean pull (+0.41) is the noise bias of the
    maximum-likelihood ``reff`` (median +7% at S/N 20), which no error estimate removes.
    """
    clean = render_stamp([TRUTH], PSF, (41, 41))
    sigma = noise_sigma_for_snr(clean, 20.0)
    var = np.full(clean.shape, sigma**2)
    ref = fit_patch({"r": (clean, var, None)}, (0, 0), _objects(), None, {"r": MIX}, "sersic", CFG)
    r0 = ref["sersic_reff"][0]
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(400):
        images = {"r": (clean + rng.normal(0, sigma, clean.shape), var, None)}
        out = fit_patch(images, (0, 0), _objects(), None, {"r": MIX}, "sersic", CFG)
        if out["sersic_flag"][0] or out["sersic_param_at_bound_flag"][0]:
            continue
        lo, hi = reff_profile_errors(images, (0, 0), _objects(), {"r": MIX}, "sersic", out, CFG)
        rows.append((out["sersic_reff"][0], out["sersic_reffErr"][0], lo[0], hi[0]))
    r, err, lo, hi = np.array(rows).T
    assert len(rows) > 360 and np.isfinite(lo).all() and np.isfinite(hi).all()
    dln = np.log(r / r0)
    # The profile interval is symmetric in neither reff nor ln reff; it maps exactly to ln reff widths.
    w = np.where(dln < 0, np.log1p(hi / r), -np.log1p(-lo / r))
    pull_fisher = dln / (err / r)
    pull_profile = dln / w
    assert np.std(pull_fisher) < 0.9  # the failure the profile errors fix
    assert np.std(pull_profile) == pytest.approx(1.0, abs=0.1)
    assert abs(np.mean(pull_profile)) < 0.5

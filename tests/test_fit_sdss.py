"""galmix vs Imfit's reference Sersic fit of the SDSS IC 3478 64x64 cutout (real data).

The data are in ``$GALMIX_DATA/sdss_imfit`` (default ``shared/data`` beside the checkout, see its README and tests/shared_data.py). Imfit's
best fit (README): X0 32.9439, Y0 34.0933 (1-indexed), PA 18.2612 (from +y), ell 0.235989,
n 2.40028, r_e 60.7612 px, I_e 20.0094, chi2 4555.95. Agreement expected from the Sersic mixture
approximation (doc/fitting.rst): about 1 sigma of the statistical errors in n and r_e, < 1.5% in flux.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.models.psf_mixture import PsfMixture
from scipy.special import gamma, gammaincinv
from shared_data import shared_dir

DATA = Path(os.environ.get("GALMIX_DATA", shared_dir() / "data")) / "sdss_imfit"


def test_ic3478_sersic_matches_imfit():
    data = fits.getdata(DATA / "ic3478rss_64x64.fits").astype(np.float64)
    var = (data + 130.1) / 4.725 + (4.3 / 4.725) ** 2
    # No PSF in Imfit's fit, which integrates over pixels: galmix's "PSF" is the pixel. Imfit fits the
    # one Sersic, so no residual sources are added (the galaxy's own structure would give some).
    out = fit_patch({"r": (data, var, None)}, (0, 0), Table({"x": [31.0], "y": [31.0]}), None,
                    {"r": PsfMixture.gaussian(np.sqrt(1 / 12))}, "sersic",
                    SourceFitConfig(pixel_scale=0.396, stamp_min=64, stamp_max=64, residual_threshold=0.0))
    assert not out["sersic_flag"][0]
    assert out["sersic_x"][0] + 1 == pytest.approx(32.9439, abs=0.02)
    assert out["sersic_y"][0] + 1 == pytest.approx(34.0933, abs=0.02)
    assert (out["sersic_pa"][0] - 90) % 180 == pytest.approx(18.2612, abs=0.1)
    assert 1 - out["sersic_q"][0] == pytest.approx(0.235989, abs=0.003)
    assert abs(out["sersic_index"][0] - 2.40028) < 1.5 * out["sersic_indexErr"][0]
    assert abs(out["sersic_reffPix"][0] - 60.7612) < 1.5 * out["sersic_reffErr"][0] / 0.396
    n, r_e, ell, i_e = 2.40028, 60.7612, 0.235989, 20.0094
    b = gammaincinv(2 * n, 0.5)
    flux = 2 * np.pi * n * np.exp(b) * b ** (-2 * n) * gamma(2 * n) * i_e * r_e**2 * (1 - ell)
    assert out["r_sersicFlux"][0] == pytest.approx(flux, rel=0.015)
    # Same pixels and noise model: the chi-squares agree to 0.5%.
    chi2 = out["sersic_chisq_reduced"][0] * out["sersic_n_pix"][0]
    assert chi2 == pytest.approx(4555.947654, rel=0.005)

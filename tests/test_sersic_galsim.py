"""PSF-convolved flux and half-light radius of the Sersic mixtures against GalSim's exact Sersic.

Target: for 0.5 <= n <= 6 and reff / PSF-FWHM from 0.3 to 5 the convolved mixture's flux and
half-light radius match the convolved exact profile within 0.2%. A denser grid is in
benchmarks/bench_sersic_accuracy.py.
"""

import galsim
import numpy as np
import pytest
from lsst.galmix.models.sersic import DEFAULT_N_COMPONENTS, sersic_mixture
from lsst.galmix.models.sersic_check import compare_to_galsim, measure_convolved

TOLERANCE = 2.0e-3
FWHM = 2.5  # pixels: 0.5" seeing on 0.2" pixels
PSF = galsim.Moffat(beta=3.5, fwhm=FWHM)

# Nodes (0.5, 1, 4, 6) and values between nodes; sizes spanning the target range.
CASES = [(n, ratio) for n in (0.5, 1.0, 4.0, 6.0) for ratio in (0.3, 1.0, 5.0)] + [
    (0.53, 0.5),
    (0.77, 2.0),
    (1.37, 0.3),
    (2.31, 3.0),
    (3.14, 1.0),
    (4.71, 0.6),
    (5.55, 2.0),
]


@pytest.mark.parametrize("n, ratio", CASES)
def test_convolved_flux_and_hlr_match_galsim(n: float, ratio: float) -> None:
    exact, mixture = compare_to_galsim(n, ratio * FWHM, PSF, q=0.6, position_angle=0.5)
    assert mixture.flux / exact.flux == pytest.approx(1.0, abs=TOLERANCE)
    assert mixture.hlr / exact.hlr == pytest.approx(1.0, abs=TOLERANCE)


def test_kolmogorov_psf_and_other_shape() -> None:
    exact, mixture = compare_to_galsim(
        2.0, 1.5 * FWHM, galsim.Kolmogorov(fwhm=FWHM), q=0.3, position_angle=-1.1, aperture=15.0
    )
    assert mixture.flux / exact.flux == pytest.approx(1.0, abs=TOLERANCE)
    assert mixture.hlr / exact.hlr == pytest.approx(1.0, abs=TOLERANCE)


def test_measurement_detects_a_size_error_at_the_tolerance() -> None:
    # The comparison must be able to fail: a mixture 0.4% too large must be caught by the hlr check.
    n, reff, q, angle = 4.0, 2.0 * FWHM, 0.6, 0.5
    w, s, _, _ = sersic_mixture(n, DEFAULT_N_COMPONENTS)
    shear = galsim.Shear(q=q, beta=angle * galsim.radians)
    images = []
    for scale in (1.0, 1.004):
        profile = galsim.Add(
            [galsim.Gaussian(sigma=scale * sk * reff * np.sqrt(q), flux=wk) for wk, sk in zip(w, s)]
        ).shear(shear)
        images.append(galsim.Convolve(profile, PSF).drawImage(nx=301, ny=301, scale=1.0))
    base, bigger = (measure_convolved(im, 1.0, q, angle, 20 * reff) for im in images)
    assert bigger.hlr / base.hlr - 1.0 > TOLERANCE


def test_measurement_of_a_gaussian_matches_its_analytic_half_light_radius() -> None:
    # Elliptical Gaussian, no PSF: the half-light semi-major axis is sigma_major sqrt(2 ln 2). The
    # samples are treated as uniform pixels, which widens by ~1/(24 sigma^2) relative: allow 0.4%.
    sigma, q, angle = 8.0, 0.5, 0.3
    profile = galsim.Gaussian(sigma=sigma * np.sqrt(q)).shear(q=q, beta=angle * galsim.radians)
    image = profile.drawImage(nx=301, ny=301, scale=1.0, method="no_pixel")
    result = measure_convolved(image, 1.0, q, angle, 20 * sigma)
    assert result.hlr == pytest.approx(sigma * np.sqrt(2 * np.log(2)), rel=4e-3)
    assert result.flux == pytest.approx(1.0, abs=1e-5)

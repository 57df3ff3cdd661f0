"""PSF mixture fitting to kernel images."""

import galsim
import numpy as np
from lsst.galmix.fitting.psf import fit_psf_image, fit_psf_images_table, psf_at
from lsst.galmix.fitting.testing import moffat_psf, psf_kernel
from lsst.galmix.models.psf_mixture import PsfMixture


def test_gaussian_kernel_recovered_exactly():
    # A pixel-integrated Gaussian evaluated at pixel centres is a Gaussian of variance sigma^2 + 1/12
    # to high accuracy for sigma >~ 1.5 pixel.
    sigma = 2.0
    kern = galsim.Gaussian(sigma=sigma).shear(q=0.7, beta=0.5 * galsim.radians).drawImage(
        nx=35, ny=35, scale=1.0).array
    fit = fit_psf_image(kern, 1)
    assert fit.mixture is not None and not fit.flags.fatal
    assert fit.chi2 < 1e-6
    cov = fit.mixture.covariance()
    assert abs(np.linalg.det(cov) ** 0.25 - np.sqrt(sigma**2 * 1.0 + 1 / 12)) < 0.01
    assert abs(fit.mixture.dx[0]) < 1e-6 and abs(fit.mixture.dy[0]) < 1e-6


def test_moffat_more_gaussians_fit_better_and_fractions_sum_to_one():
    kern = psf_kernel(moffat_psf(3.5), 41)
    chi2 = []
    for n in (1, 2, 3):
        fit = fit_psf_image(kern, n)
        assert fit.mixture is not None and fit.mixture.n_gauss == n
        assert abs(fit.mixture.frac.sum() - 1) < 1e-12
        chi2.append(fit.chi2)
    assert chi2[0] > 10 * chi2[1] > 100 * chi2[2]
    assert chi2[1] < 2e-4
    assert fit_psf_image(kern, 1).flags.names() == ["large_chi2"]


def test_bad_kernels_give_flags_not_exceptions():
    for bad in (np.full((21, 21), np.nan), np.zeros((21, 21)), np.zeros((0, 0))):
        fit = fit_psf_image(bad, 2)
        assert fit.mixture is None and "no_data" in fit.flags and fit.flags.fatal


def test_table_roundtrip_and_lookup():
    kern = psf_kernel(moffat_psf(3.0), 31)
    table = fit_psf_images_table([kern, None, kern], [(10.0, 10.0), (50.0, 10.0), (90.0, 10.0)],
                                 cells=[(0, 0), (1, 0), (2, 0)], n_gauss=2)
    assert list(table["psf_flag"]) == [False, True, False]
    assert table["psf_flag_no_data"][1]
    mix = PsfMixture.from_row(table[0])
    assert mix.is_valid() and mix.n_gauss == 2
    # The nearest unflagged row is used: (50, 10) is flagged, so a position there gets a neighbour.
    near = psf_at(table, 52.0, 10.0)
    assert near is not None and np.allclose(near.frac, mix.frac)
    assert psf_at(lambda x, y: kern, 0, 0).n_gauss == 2
    assert psf_at(lambda x, y: None, 0, 0) is None

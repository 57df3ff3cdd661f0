"""A PSF kernel that holds a unit-flux point source's enclosed light gives total fluxes (fitting/psf.py)."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import moffat_psf, psf_kernel

CFG = SourceFitConfig()


def _objects(x: float, y: float) -> Table:
    obj = Table({"objectId": [1], "x": [x], "y": [y]})
    obj["shape_xx"], obj["shape_yy"], obj["shape_xy"] = [14.0], [11.0], [0.5]
    return obj


def test_kernel_of_a_unit_flux_psf_gives_total_fluxes():
    """A kernel drawn from a unit-flux Moffat keeps 99.76% of the light in 25 x 25 pixels; so do a star's data.

    The mixture keeps the kernel's sum: the star's flux is its total flux. Normalising the kernel to unit
    sum (what the fit did before) returns the light inside the box, 2.6 mmag fainter.
    """
    kernel = moffat_psf(4.0).drawImage(nx=25, ny=25, scale=1.0).array
    assert 0.995 < kernel.sum() < 0.999
    flux = 1e4
    image = np.zeros((61, 61))
    image[18:43, 18:43] = flux * kernel  # a star drawn in a stamp of the kernel's size, like the simulation
    found = {}
    for label, k in (("as_given", kernel), ("unit_sum", kernel / kernel.sum())):
        fit = fit_psf_image(k, 4)
        assert fit.kernel_sum == pytest.approx(k.sum())
        out = fit_patch({"r": (image, np.ones_like(image), None)}, (0, 0), _objects(30.0, 30.0), None,
                        {"r": fit.mixture}, "point", CFG)
        found[label] = out["r_psfFlux"][0] / flux
    assert found["as_given"] == pytest.approx(1.0, abs=2e-5)
    assert found["unit_sum"] == pytest.approx(kernel.sum(), abs=2e-5)


def test_kernel_in_other_units_is_normalised():
    """A kernel summing to 37 (or 0.5) is not a unit-flux PSF image: its mixture holds ~1 of unit light."""
    kernel = psf_kernel(moffat_psf(4.0), 41)
    ref = fit_psf_image(kernel, 3).mixture.frac.sum()
    for scale in (37.0, 0.5):
        fit = fit_psf_image(scale * kernel, 3)
        assert fit.kernel_sum == pytest.approx(scale)
        assert fit.mixture.frac.sum() == pytest.approx(ref, rel=1e-6)

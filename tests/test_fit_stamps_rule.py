"""The stamp rule: stamps grow until they hold the fitted galaxy."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.stamps import required_half_size
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp

PSF = moffat_psf(3.0)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture


def test_required_half_size_of_a_gaussian():
    g = np.array([[100.0, 0.0, 0.0, 16.0, 0.0, 16.0]])  # sigma 4
    # Light beyond R: exp(-R^2 / 32) <= 0.005 -> R = 4 sqrt(2 ln 200) = 13.02.
    assert required_half_size(g, 0.0, 0.005, 0.0, 160) == 14
    # Surface brightness 100 / (32 pi) exp(-R^2 / 32) <= 0.05 * 1 -> R = 10.3.
    assert required_half_size(g, 1.0, 0.0, 0.05, 160) == 10
    assert required_half_size(g, 0.0, 1e-30, 0.0, limit=20) == 20
    assert required_half_size(np.array([[0.0, 0, 0, 1, 0, 1]]), 1.0, 0.005, 0.05, 160) == 0


@pytest.mark.parametrize("n", [4.0, 6.0])
def test_concentrated_large_galaxies_recover_n_on_the_default_stamp(n):
    truth = GalaxyTruth(150.0, 150.0, 20000.0, n=n, reff=12.0, q=0.8, position_angle=0.4)
    shape = (301, 301)
    clean = render_stamp([truth], PSF, shape)
    sigma = noise_sigma_for_snr(clean, 1000.0)
    img = clean + np.random.default_rng(int(n)).normal(0, sigma, shape)
    objects = Table({"objectId": [1], "x": [truth.x], "y": [truth.y]})
    images = {"r": (img, np.full(shape, sigma**2), None)}

    def fit(**kw):
        return fit_patch(images, (0, 0), objects, None, {"r": MIX}, "sersic", SourceFitConfig(**kw))

    out = fit()
    assert not out["sersic_flag"][0]
    assert abs(out["sersic_index"][0] - n) < 0.05
    assert abs(np.log(out["sersic_reffPix"][0] / truth.reff)) < 0.03
    # Without growing (the first 4.5-sigma stamp only) the same galaxy is fitted on far fewer pixels.
    fixed = fit(stamp_flux_fraction=0.0, stamp_edge_noise=0.0)
    assert out["sersic_n_pix"][0] > 2 * fixed["sersic_n_pix"][0]


def test_growth_is_bounded_by_the_footprint_with_footprint_only():
    from lsst.galmix.fitting.blend import (
        BandImage,
        ObjectInput,
        _footprint_box,
        _grown_box,
        _measure,
        _prepare_set,
    )
    from lsst.galmix.fitting.source import solve
    from lsst.galmix.models.definitions import get_model
    from lsst.galmix.schema import FlagSet

    truth = GalaxyTruth(100.0, 100.0, 20000.0, n=4.0, reff=8.0, q=0.8, position_angle=0.4)
    shape = (201, 201)
    clean = render_stamp([truth], PSF, shape)
    sigma = noise_sigma_for_snr(clean, 500.0)
    img = clean + np.random.default_rng(5).normal(0, sigma, shape)
    footprints = np.zeros(shape, int)
    footprints[70:131, 75:126] = 1  # x 75-125, y 70-130
    images = [BandImage(img, np.full(shape, sigma**2), None, (0, 0))]
    cfg = SourceFitConfig(footprint_only=True)
    assert _footprint_box(footprints, images, [1], cfg) == ((75, 70), (126, 131))
    assert _footprint_box(footprints, images, [1], SourceFitConfig()) is None
    obj = ObjectInput(truth.x, truth.y, None, 1, [MIX], FlagSet())
    _measure(obj, [obj], images, footprints, cfg)
    prep = _prepare_set(get_model("sersic"), [obj], images, footprints, [1], cfg)
    outcomes = solve([prep], cfg.settings)[0]
    (x0, y0), (x1, y1) = _grown_box(prep, outcomes, images, cfg)
    assert x0 < 75 and y0 < 70 and x1 > 126 and y1 > 131  # the model wants more than the footprint
    limit = _footprint_box(footprints, images, [1], cfg)
    (x0, y0), (x1, y1) = _grown_box(prep, outcomes, images, cfg, limit)
    assert x0 >= 75 and y0 >= 70 and x1 <= 126 and y1 <= 131

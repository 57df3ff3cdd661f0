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
    # Light beyond x = +-R: exp(-R^2 / 32) <= 0.005 / 2 -> R = 4 sqrt(2 ln 400) = 13.85; the same along y.
    assert required_half_size(g, 0.0, 0.005, 0.0, 160) == (14, 14)
    # Surface brightness on the edge 100 / (32 pi) exp(-R^2 / 32) <= 0.05 * 1 -> R = 10.3.
    assert required_half_size(g, 1.0, 0.0, 0.05, 160) == (10, 10)
    assert required_half_size(g, 0.0, 1e-30, 0.0, limit=20) == (20, 20)
    assert required_half_size(np.array([[0.0, 0, 0, 1, 0, 1]]), 1.0, 0.005, 0.05, 160) == (0, 0)


def test_required_half_size_follows_the_axes_of_an_elongated_gaussian():
    # sigma 8 along x, 2 along y: 8 and 2 times sqrt(2 ln 400) = 27.7 and 6.9.
    g = np.array([[100.0, 0.0, 0.0, 64.0, 0.0, 4.0]])
    assert required_half_size(g, 0.0, 0.005, 0.0, 160) == (28, 7)
    assert required_half_size(g[:, [0, 1, 2, 5, 4, 3]], 0.0, 0.005, 0.0, 160) == (7, 28)


@pytest.mark.parametrize("angle", [0.0, 0.4, np.pi / 4, 1.3])
def test_required_half_size_keeps_the_light_beyond_its_box_below_the_fraction(angle):
    # A rotated, elongated mixture (a disk-like profile of three Gaussians): the light beyond the box,
    # summed on a fine grid, stays below the fraction; the box holds fewer pixels than the square of the
    # largest variance, which the rule used before.
    c, s = np.cos(angle), np.sin(angle)
    rows = []
    for flux, var in [(50.0, 4.0), (30.0, 16.0), (20.0, 49.0)]:
        cov = np.array([[c, -s], [s, c]]) @ np.diag([var, 0.09 * var]) @ np.array([[c, s], [-s, c]])
        rows.append([flux, 0.0, 0.0, cov[0, 0], cov[0, 1], cov[1, 1]])
    g = np.array(rows)
    hx, hy = required_half_size(g, 0.0, 0.005, 0.0, 160)
    step = 0.05
    x = np.arange(-60.0, 60.0, step) + 0.5 * step
    xx, yy = np.meshgrid(x, x)
    img = np.zeros_like(xx)
    for flux, _, _, a, b, d in g:
        det = a * d - b * b
        img += flux / (2 * np.pi * np.sqrt(det)) * np.exp(-0.5 * (d * xx**2 - 2 * b * xx * yy + a * yy**2) / det)
    outside = img[(np.abs(xx) > hx) | (np.abs(yy) > hy)].sum() / img.sum()
    assert outside <= 0.005
    lam = np.max(0.5 * (g[:, 3] + g[:, 5]) + np.sqrt(0.25 * (g[:, 3] - g[:, 5]) ** 2 + g[:, 4] ** 2))
    square = np.ceil(np.sqrt(lam) * np.sqrt(2 * np.log(200)))
    assert hx * hy < square**2


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


def test_required_half_size_is_the_smallest_integer_meeting_a_bound():
    # Per axis the half-size R meets the light or the edge bound and R - 1 meets neither (random mixtures,
    # some with negative components), or R is the limit.
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        flux = rng.uniform(-0.1, 1.0, n) * 10 ** rng.uniform(0, 4)
        xx, yy = 10 ** rng.uniform(-1, 3, n), 10 ** rng.uniform(-1, 3, n)
        xy = rng.uniform(-0.9, 0.9, n) * np.sqrt(xx * yy)
        g = np.c_[flux, np.zeros(n), np.zeros(n), xx, xy, yy]
        noise = float(rng.uniform(0.01, 10))
        halves = required_half_size(g, noise, 0.005, 0.05, 160)
        w = np.maximum(flux, 0.0) / flux.sum()
        peak = np.maximum(flux, 0.0) / (2 * np.pi * np.sqrt(xx * yy - xy**2))
        for half, var in zip(halves, (xx, yy)):
            light, edge = ([(a * np.exp(-0.5 * r**2 / var)).sum() for r in (half, half - 1)] for a in (w, peak))
            meets = [light[k] <= 0.0025 or edge[k] <= 0.05 * noise for k in (0, 1)]
            assert half == 160 or meets[0]
            assert half == 0 or not meets[1]

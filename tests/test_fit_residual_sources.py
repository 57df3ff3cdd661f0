"""Residual sources: neighbours missing from the catalogue are found in the residuals and fitted alongside."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp
from lsst.galmix.models.definitions import get_model
from shared_data import shared_dir

PSF = moffat_psf(4.0)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
GALAXY = GalaxyTruth(40.0, 40.0, 1000.0, n=1.0, reff=2.0, q=0.6, position_angle=0.5)
# A point-like neighbour with 6% of the galaxy's flux, 7 px (1.75 PSF FWHM) away: too close and faint for
# a separate detection, as for most of the neighbours that bias the simulated repository's galaxies.
NEIGHBOUR = GalaxyTruth(45.0, 35.0, 60.0, n=0)


def _fit(img, sigma, **kw):
    objects = Table({"objectId": [1], "x": [GALAXY.x], "y": [GALAXY.y]})
    return fit_patch({"r": (img, np.full(img.shape, sigma**2), None)}, (0, 0), objects, None, {"r": MIX}, "sersic",
                     SourceFitConfig(**kw))


def _image(snr: float, seed: int, with_neighbour: bool = True):
    clean = render_stamp([GALAXY, NEIGHBOUR] if with_neighbour else [GALAXY], PSF, (80, 80))
    sigma = noise_sigma_for_snr(render_stamp([GALAXY], PSF, (80, 80)), snr)
    return clean + np.random.default_rng(seed).normal(0, sigma, clean.shape), sigma


def test_missed_neighbour_is_fitted_and_removes_the_flux_bias():
    img, sigma = _image(200.0, 1)
    without = _fit(img, sigma, residual_threshold=0.0)
    with_ = _fit(img, sigma)
    assert without["sersic_n_residual_sources"][0] == 0
    # Absorbed by the galaxy's model, the neighbour biases its flux by +3.5% (2.7 sigma with the free sky).
    assert without["r_sersicFlux"][0] - 1000.0 > 0.025 * 1000.0
    assert without["r_sersicFlux"][0] - 1000.0 > 2 * without["r_sersicFluxErr"][0]
    assert with_["sersic_n_residual_sources"][0] == 1
    assert not with_["sersic_flag"][0]
    assert abs(with_["r_sersicFlux"][0] - 1000.0) < 2 * with_["r_sersicFluxErr"][0]
    assert with_["sersic_index"][0] == pytest.approx(1.0, abs=0.2)
    def chi2(t):
        return t["sersic_chisq_reduced"][0] * t["sersic_n_pix"][0]

    assert chi2(with_) < chi2(without)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_no_residual_source_without_a_neighbour(seed):
    img, sigma = _image(50.0, seed, with_neighbour=False)
    out = _fit(img, sigma)
    assert out["sersic_n_residual_sources"][0] == 0
    assert abs(out["r_sersicFlux"][0] - 1000.0) < 4 * out["r_sersicFluxErr"][0]


def test_model_mismatch_is_not_a_residual_source():
    # An exponential fitted to a de Vaucouleurs galaxy leaves point-symmetric wings at 2-2.5 PSF FWHM,
    # 8-9 sigma at S/N 500 (three peaks were taken for sources before the mirror-image test): none is a
    # neighbour, so none is fitted.
    galaxy = GalaxyTruth(40.0, 40.0, 1000.0, n=4.0, reff=3.0, q=0.8, position_angle=0.5)
    clean = render_stamp([galaxy], PSF, (80, 80))
    sigma = noise_sigma_for_snr(clean, 500.0)
    img = clean + np.random.default_rng(1).normal(0, sigma, clean.shape)
    objects = Table({"objectId": [1], "x": [galaxy.x], "y": [galaxy.y]})
    out = fit_patch({"r": (img, np.full(img.shape, sigma**2), None)}, (0, 0), objects, None, {"r": MIX}, "exp",
                    SourceFitConfig())
    assert out["exp_n_residual_sources"][0] == 0


def _cosmos_stamp(hdu: int):
    from astropy.io import fits

    root = f"{shared_dir() / 'realdata'}/"
    cat = fits.getdata(root + "paltas_cosmos/real_galaxy_catalog_23.5.fits", 1)
    img = fits.getdata(root + "paltas_cosmos/real_galaxy_images_23.5_n1.fits", hdu).astype(float)
    psf = fits.getdata(root + "galsim_cosmos/real_galaxy_PSF_images.fits", 0).astype(float)
    var = np.full(img.shape, float(cat["NOISE_VARIANCE"][hdu]))
    return img, var, fit_psf_image(psf / psf.sum(), 4).mixture


@pytest.mark.parametrize("hdu", [0, 3, 5])
def test_real_galaxy_structure_gets_no_residual_source(hdu):
    """Resolved COSMOS galaxies (knots, arms): peaks the search keeps lie beyond STRUCTURE_RADIUS r_e,
    never on the galaxy; without the structure rule it places them on its knots (measured: 1-3 per stamp)."""
    from lsst.galmix.fitting.blend import BandImage, ObjectInput, _measure, _prepare_set
    from lsst.galmix.fitting.residual_sources import STRUCTURE_RADIUS, inside_half_light, residual_peaks
    from lsst.galmix.fitting.source import solve
    from lsst.galmix.schema import FlagSet

    img, var, mix = _cosmos_stamp(hdu)
    ny, nx = img.shape
    obj = ObjectInput(nx / 2 - 0.5, ny / 2 - 0.5, None, 0, [mix], FlagSet())
    images = [BandImage(img, var, None, (0, 0))]
    cfg = SourceFitConfig()
    _measure(obj, [obj], images, None, cfg)
    prep = _prepare_set(get_model("sersic"), [obj], images, None, [0], cfg)
    outcomes = solve([prep], cfg.settings)[0]
    peaks = residual_peaks(prep, outcomes, 5.0, 1.0, 10)
    if peaks:
        xs, ys = np.array(peaks).T
        assert not inside_half_light(xs, ys, outcomes, STRUCTURE_RADIUS).any()
    # The rule is what keeps them off: the significant peaks inside 3 r_e exist.
    import lsst.galmix.fitting.residual_sources as rs

    old = rs.STRUCTURE_RADIUS
    try:
        rs.STRUCTURE_RADIUS = 0.0
        unruled = residual_peaks(prep, outcomes, 5.0, 1.0, 10)
    finally:
        rs.STRUCTURE_RADIUS = old
    xs, ys = np.array(unruled).T
    assert inside_half_light(xs, ys, outcomes, STRUCTURE_RADIUS).any()


def test_refit_over_its_iteration_limit_is_not_accepted():
    """A refit that does not converge within ``residual_max_iter`` keeps the first fit, bit for bit."""
    img, sigma = _image(200.0, 1)
    without = _fit(img, sigma, residual_threshold=0.0)
    capped = _fit(img, sigma, residual_max_iter=1)
    assert capped["sersic_n_residual_sources"][0] == 0
    for name in ("r_sersicFlux", "r_sersicFluxErr", "sersic_index", "sersic_reff", "sersic_x", "sersic_y"):
        assert capped[name][0] == without[name][0], name


def _neighbour_refit_inputs():
    from lsst.galmix.fitting.blend import BandImage, ObjectInput, _measure, _prepare_set
    from lsst.galmix.fitting.source import solve
    from lsst.galmix.schema import FlagSet

    img, sigma = _image(200.0, 1)
    obj = ObjectInput(GALAXY.x, GALAXY.y, None, 0, [MIX], FlagSet())
    images = [BandImage(img, np.full(img.shape, sigma**2), None, (0, 0))]
    cfg = SourceFitConfig()
    _measure(obj, [obj], images, None, cfg)
    prep = _prepare_set(get_model("sersic"), [obj], images, None, [0], cfg)
    return prep, solve([prep], cfg.settings)[0], cfg


@pytest.mark.parametrize("swap", [False, True])
def test_residual_source_taking_the_objects_first_place_is_rejected(swap, monkeypatch):
    """The refit is rejected when a residual source ends on the first fit's centre while the object ran off
    (seen beside bright stars: the object became a streak and the point source took its place), and only
    then."""
    import lsst.galmix.fitting.residual_sources as rs

    prep, first, cfg = _neighbour_refit_inputs()
    solve = rs.solve

    def moved(prepared, settings, n_threads=1):
        refits = solve(prepared, settings, n_threads)
        if swap:
            galaxy, point = refits[0][0], refits[0][1]
            point.theta = np.array(first[0].theta[:2]) + 0.3
            galaxy.theta = galaxy.theta.copy()
            galaxy.theta[1] -= 12.0
        return refits

    monkeypatch.setattr(rs, "solve", moved)
    kept = rs.refit_with_residual_sources([(prep, first)], cfg.settings, 5.0, 1.0, 3)[0]
    assert (kept[0] is first[0]) == swap
    assert kept[0].n_residual == (0 if swap else 1)

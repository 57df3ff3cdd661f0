"""Systematic flux-error floors: the PSF kernel's enclosed light and model misfit (fitting/psf.py, errors.py)."""

import galsim
import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting import source
from lsst.galmix.fitting.errors import model_weighted_chi2, residual_flux_scales
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import SourceFitConfig
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, psf_kernel, render_stamp

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


def test_model_weighted_chi2_of_pure_noise():
    """Over pure noise the model-weighted chi2 is 1 with the standard deviation it reports."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:41, 0:41]
    src = np.exp(-((xx - 20.0) ** 2 + (yy - 20.0) ** 2) / (2 * 2.0**2))
    weight = np.full(src.shape, 4.0)
    values = []
    for _ in range(2000):
        chi2, noise = model_weighted_chi2(rng.normal(0, 0.5, src.shape), weight, np.zeros_like(src), src)
        values.append(chi2)
    # sqrt(2 sum m^2) / sum m for a circular Gaussian of sigma 2: sqrt(2 / (4 pi 4)).
    assert noise == pytest.approx(np.sqrt(2.0 / (16 * np.pi)), rel=1e-3)
    assert np.mean(values) == pytest.approx(1.0, abs=0.01)
    assert np.std(values) == pytest.approx(noise, rel=0.08)
    assert np.isnan(model_weighted_chi2(src, weight, src, np.zeros_like(src))[0])


def _fits(truth: GalaxyTruth, model: str, fluxes: list[float], n_real: int, seed: int,
          monkeypatch: pytest.MonkeyPatch) -> dict[float, np.ndarray]:
    """Per total flux: rows of (flux, error, error without the misfit term) over noise realisations."""
    psf = moffat_psf(4.0)
    mix = fit_psf_image(psf_kernel(psf, 41), 4).mixture
    clean = render_stamp([truth], psf, (61, 61))
    rng = np.random.default_rng(seed)
    col = "psf" if model == "point" else model
    out = {}
    for flux in fluxes:
        rows = []
        for _ in range(n_real):
            image = flux * clean + rng.normal(size=clean.shape)
            args = ({"r": (image, np.ones_like(image), None)}, (0, 0), _objects(truth.x, truth.y), None,
                    {"r": mix}, model, CFG)
            with monkeypatch.context() as m:
                m.setattr(source, "residual_flux_scales",
                          lambda specs, theta, fluxes, bands, sky=None: np.ones((len(specs), len(bands))))
                raw = fit_patch(*args)
            fit = fit_patch(*args)
            rows.append((fit[f"r_{col}Flux"][0], fit[f"r_{col}FluxErr"][0], raw[f"r_{col}FluxErr"][0]))
        out[flux] = np.array(rows)
    return out


def test_errors_unchanged_where_the_model_matches(monkeypatch):
    """A Sersic galaxy fitted with the Sersic model keeps its statistical errors from S/N 10 to 1000."""
    truth = GalaxyTruth(30.3, 29.8, 1.0, n=1.5, reff=3.0, q=0.6, theta=0.3)
    for rows in _fits(truth, "sersic", [300.0, 3e4], 25, 5, monkeypatch).values():
        ratio = rows[:, 1] / rows[:, 2]
        assert (ratio >= 1.0).all() and np.mean(ratio) < 1.02


def test_misfit_widens_errors_in_proportion_to_snr(monkeypatch):
    """A bulge + disk galaxy fitted with one exponential: the misfit's share of the error grows with S/N.

    Measured (30 realisations per flux): flux bias -0.8, -9.7 and -105 raw errors at S/N 16, 160 and 1400;
    error factors 1.00, 1.37 and 9.7, which bring the chi rms to 1.3, 7.4 and 11 (the fit absorbs most of
    a misfit into its parameters, so its residuals show only part of it: the factor is a lower bound).
    """
    truth = GalaxyTruth(30.3, 29.8, 1.0, n=1.0, reff=4.0, q=0.6, theta=0.3, bulge_frac=0.3, bulge_reff=1.0)
    fits = _fits(truth, "exp", [300.0, 3e4], 12, 3, monkeypatch)
    low, high = (np.median(fits[f][:, 1] / fits[f][:, 2]) for f in (300.0, 3e4))
    assert low < 1.02 and high > 5.0
    f, err, raw = fits[3e4].T
    chi_raw, chi = (f - 3e4) / raw, (f - 3e4) / err
    assert np.sqrt(np.mean(chi_raw**2)) > 5 * np.sqrt(np.mean(chi**2))


def test_residual_scales_of_a_joint_fit_are_per_source():
    """Two point sources, one with a misfit (its data are wider than the PSF): only its errors widen."""
    from lsst.galmix.fitting.optimize import BandInput, SourceSpec
    from lsst.galmix.models.definitions import get_model

    psf = moffat_psf(4.0)
    mix = fit_psf_image(psf_kernel(psf, 41), 4).mixture
    image = galsim.ImageD(81, 41, scale=1.0)
    psf.withFlux(1e4).drawImage(image=image, offset=(-20.0, 0.0), add_to_image=True)
    galsim.Convolve(galsim.Gaussian(sigma=1.5, flux=1e4), psf).drawImage(image=image, offset=(20.0, 0.0),
                                                                         add_to_image=True)
    band = BandInput(image.array, np.ones(image.array.shape), 0, 0, mix)
    point = get_model("point")
    specs = [SourceSpec(point, (20.0, 20.0)), SourceSpec(point, (60.0, 20.0))]
    theta = np.array([20.0, 20.0, 60.0, 20.0])
    scales = residual_flux_scales(specs, theta, np.array([[1e4, 1e4], [np.nan, np.nan]]), [band, None])
    assert scales.shape == (2, 2)
    assert scales[0, 0] == 1.0 and scales[1, 0] > 10.0
    assert (scales[:, 1] == 1.0).all()

"""Recovery of known parameters from GalSim-rendered sources; error calibration; blends."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import (
    GalaxyTruth,
    make_scene,
    moffat_psf,
    noise_sigma_for_snr,
    psf_kernel,
    render_stamp,
)

PSFS = {"g": moffat_psf(4.0), "r": moffat_psf(3.5), "i": moffat_psf(3.0)}
MIX4 = {b: fit_psf_image(psf_kernel(p, 41), 4).mixture for b, p in PSFS.items()}


def _objects(truths):
    return Table({"objectId": np.arange(1, len(truths) + 1), "x": [t.x for t in truths],
                  "y": [t.y for t in truths]})


def test_noiseless_gaussian_galaxy_recovered():
    t = GalaxyTruth(40.3, 39.6, 1000.0, n=0.5, reff=4.0, q=0.5, position_angle=0.4)
    img = render_stamp([t], PSFS["r"], (80, 80))
    images = {"r": (img, np.full(img.shape, 1e-4), None)}
    out = fit_patch(images, (0, 0), _objects([t]), None, {"r": MIX4["r"]}, "gauss",
                    SourceFitConfig(pixel_scale=0.2))
    assert not out["gauss_flag"][0]
    assert out["r_gaussFlux"][0] == pytest.approx(1000.0, rel=2e-3)
    assert out["gauss_reffPix"][0] == pytest.approx(4.0, rel=2e-3)
    assert out["gauss_reff"][0] == pytest.approx(0.8, rel=2e-3)
    assert out["gauss_q"][0] == pytest.approx(0.5, abs=2e-3)
    assert out["gauss_pa"][0] == pytest.approx(np.degrees(0.4), abs=0.2)
    assert out["gauss_x"][0] == pytest.approx(40.3, abs=1e-3) and out["gauss_y"][0] == pytest.approx(39.6, abs=1e-3)


def test_stars_flux_and_position():
    truths = [GalaxyTruth(20.2, 20.7, 500.0, n=0), GalaxyTruth(60.9, 25.1, 5000.0, n=0)]
    images, objects = make_scene(truths, {"r": PSFS["r"]}, {"r": 1.0}, (50, 80), {"r": 1e-3},
                                 np.random.default_rng(0))
    out = fit_patch(images, (0, 0), objects, None, {"r": MIX4["r"]}, "point")
    assert not out["point_flag"].any()
    dmag = -2.5 * np.log10(out["r_psfFlux"] / np.array([500.0, 5000.0]))
    assert np.abs(dmag).max() < 0.003
    assert np.allclose(out["point_x"], [20.2, 60.9], atol=2e-3)


@pytest.mark.parametrize("model,n", [("gauss", 0.5), ("sersic", 1.5)])
def test_multiband_colours_with_per_band_psfs(model, n):
    colours = {"g": 0.4, "r": 1.0, "i": 1.6}
    truths = [GalaxyTruth(35.0, 34.0, 3000.0, n=n, reff=3.0, q=0.6, position_angle=-0.7)]
    images, objects = make_scene(truths, PSFS, colours, (70, 70), {b: 1e-3 for b in PSFS},
                                 np.random.default_rng(1))
    out = fit_patch(images, (0, 0), objects, None, MIX4, model)
    assert not out[f"{model}_flag"][0]
    for b in ("g", "i"):
        colour = -2.5 * np.log10(out[f"{b}_{model}Flux"][0] / out[f"r_{model}Flux"][0])
        assert colour == pytest.approx(-2.5 * np.log10(colours[b]), abs=2e-3)
    if model == "sersic":
        assert out["sersic_index"][0] == pytest.approx(n, abs=0.03)


def test_error_calibration_flux_and_reff_at_snr_30():
    """std((fit - truth) / err) within 10% of 1 over noise realisations."""
    t = GalaxyTruth(20.0, 20.0, 1000.0, n=0.5, reff=2.5, q=0.7, position_angle=0.2)
    clean = render_stamp([t], PSFS["r"], (41, 41))
    sigma = noise_sigma_for_snr(clean, 30.0)
    rng = np.random.default_rng(42)
    cfg = SourceFitConfig(stamp_min=14, stamp_max=14)
    objects = _objects([t])
    objects["shape_xx"], objects["shape_yy"], objects["shape_xy"] = [12.0], [10.0], [0.5]
    fl, fe, lr, lre = [], [], [], []
    for _ in range(300):
        img = clean + rng.normal(0, sigma, clean.shape)
        out = fit_patch({"r": (img, np.full(img.shape, sigma**2), None)}, (0, 0), objects, None,
                        {"r": MIX4["r"]}, "gauss", cfg)
        assert not out["gauss_flag"][0]
        fl.append(out["r_gaussFlux"][0])
        fe.append(out["r_gaussFluxErr"][0])
        lr.append(np.log(out["gauss_reffPix"][0]))
        lre.append(out["gauss_reffErr"][0] / out["gauss_reff"][0])
    # Truth of the mixture fit (the PSF mixture is not exact): the noiseless fit.
    ref = fit_patch({"r": (clean, np.full(clean.shape, sigma**2), None)}, (0, 0), objects, None,
                    {"r": MIX4["r"]}, "gauss", cfg)
    pull_f = (np.array(fl) - ref["r_gaussFlux"][0]) / np.array(fe)
    pull_r = (np.array(lr) - np.log(ref["gauss_reffPix"][0])) / np.array(lre)
    assert np.std(pull_f) == pytest.approx(1.0, abs=0.1)
    assert np.std(pull_r) == pytest.approx(1.0, abs=0.1)
    assert abs(np.mean(pull_f)) < 0.25 and abs(np.mean(pull_r)) < 0.25


@pytest.mark.parametrize("mode,dx", [("joint", 8.0), ("subtract", 12.0)])
def test_blend_of_two_overlapping_galaxies(mode, dx):
    # The per-child mode converges slowly (Gauss-Seidel sweeps) for heavy overlaps: the joint mode is
    # tested on the closer pair.
    truths = [GalaxyTruth(25.0, 30.0, 2000.0, n=0.5, reff=3.0, q=0.6, position_angle=0.3),
              GalaxyTruth(25.0 + dx, 33.0, 1000.0, n=0.5, reff=2.0, q=0.8, position_angle=-0.5)]
    images, objects = make_scene(truths, {"r": PSFS["r"]}, {"r": 1.0}, (60, 70), {"r": 0.02},
                                 np.random.default_rng(3))
    objects["parentObjectId"] = [7, 7]
    out = fit_patch(images, (0, 0), objects, None, {"r": MIX4["r"]}, "gauss",
                    SourceFitConfig(blend_mode=mode))
    assert not out["gauss_flag"].any()
    tol = 0.005 if mode == "joint" else 0.05
    assert np.allclose(out["r_gaussFlux"], [2000.0, 1000.0], rtol=tol)
    assert np.allclose(out["gauss_reffPix"], [3.0, 2.0], rtol=tol)


def test_large_blend_falls_back_to_subtract():
    truths = [GalaxyTruth(15.0 + 13 * k, 30.0, 1000.0, n=0.5, reff=2.0) for k in range(3)]
    images, objects = make_scene(truths, {"r": PSFS["r"]}, {"r": 1.0}, (60, 70), {"r": 0.02},
                                 np.random.default_rng(4))
    objects["parentObjectId"] = [9, 9, 9]
    out = fit_patch(images, (0, 0), objects, None, {"r": MIX4["r"]}, "gauss", SourceFitConfig(max_children=2))
    assert out["gauss_too_many_children_flag"].all() and not out["gauss_flag"].any()
    assert np.allclose(out["r_gaussFlux"], 1000.0, rtol=0.05)


def test_model_image_rebuilt_from_table_leaves_noise_residuals():
    from lsst.galmix.fitting.rebuild import model_image

    truths = [GalaxyTruth(125.0, 230.0, 2000.0, n=0.5, reff=3.0, q=0.6, position_angle=0.3),
              GalaxyTruth(160.0, 225.0, 800.0, n=0)]
    sigma = 0.05
    images, objects = make_scene(truths, {"r": PSFS["r"]}, {"r": 1.0}, (60, 90), {"r": sigma},
                                 np.random.default_rng(8), (100, 200))
    out = fit_patch(images, (100, 200), objects, None, {"r": MIX4["r"]}, "gauss")
    model = model_image(out, "gauss", "r", MIX4["r"], (60, 90), (100, 200))
    chi = (images["r"][0] - model) / sigma
    assert abs(model.sum() - 2800.0) < 0.01 * 2800.0
    assert np.std(chi) == pytest.approx(1.0, abs=0.05)
    assert np.std(images["r"][0] / sigma) > 3.0

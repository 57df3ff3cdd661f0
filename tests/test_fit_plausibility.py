"""Plausibility flags (``bad_size``, ``bad_flux``) and the no-usable-band path of ``fit_patch``."""

import logging

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.flags import FLAGS, FlagSet
from lsst.galmix.fitting.optimize import BandInput, FitResult, SourceSpec
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.schema import empty_columns, source_columns
from lsst.galmix.fitting.source import Prepared, SourceFitConfig, split_result, write_row
from lsst.galmix.fitting.testing import GalaxyTruth, make_scene, moffat_psf, psf_kernel
from lsst.galmix.models.definitions import get_model

PSF = moffat_psf(3.0)
MIX = fit_psf_image(psf_kernel(PSF, 31), 4).mixture
ORIGIN = (500, 700)
SERSIC = get_model("sersic")


@pytest.fixture(scope="module")
def scene():
    # A resolved galaxy and a star (n = 0: a GalSim delta function), both at S/N of a few hundred.
    truths = [GalaxyTruth(520.0, 720.0, 5000.0, n=1.5, reff=4.0, q=0.6, theta=0.4),
              GalaxyTruth(560.0, 720.0, 5000.0, n=0.0)]
    return make_scene(truths, {"r": PSF}, {"r": 1.0}, (40, 80), {"r": 1.0}, np.random.default_rng(11), ORIGIN)


def _synthetic(scene, ln_reff: float, flux: float) -> tuple[dict, Prepared]:
    """A fit result as the optimizer could return it, on the stamp of the galaxy."""
    image, var, _ = scene[0]["r"]
    band = BandInput(image[5:35, 5:35], 1.0 / var[5:35, 5:35], ORIGIN[0] + 5, ORIGIN[1] + 5, MIX)
    spec = SourceSpec(SERSIC, (520.0, 720.0))
    theta = np.array([520.0, 720.0, ln_reff, 0.1, 0.0, 1.5])
    assert len(theta) == spec.n_theta
    n = spec.n_theta + spec.n_comp
    res = FitResult(theta, np.array([[flux]]), np.eye(n) * 0.01, 900.0, 6, converged=True, at_bound=False,
                    singular=False)
    prep = Prepared([spec], theta, [band], [FlagSet()])
    (out,) = split_result(prep, res, 0.0)
    table = empty_columns(source_columns(SERSIC, ["r"]), 1)
    write_row(table, 0, out, ["r"], 0.2, None)
    return table, prep


def test_registry_declares_fatal_plausibility_flags():
    fatal = {f.name: f.fatal for f in FLAGS}
    assert fatal["bad_size"] and fatal["bad_flux"]


def test_collapsed_size_sets_bad_size_and_summary_flag(scene):
    table, _ = _synthetic(scene, -460.0, 3000.0)  # reff ~ 1e-200 pixel
    assert table["sersic_bad_size_flag"][0] and table["sersic_flag"][0]
    assert not table["sersic_bad_flux_flag"][0]


def test_huge_flux_sets_bad_flux_and_summary_flag(scene):
    table, prep = _synthetic(scene, np.log(4.0), 5000.0 * 10**(0.4 * 13.5))  # a 20 mag source at 6.5 mag
    assert table["sersic_bad_flux_flag"][0] and table["sersic_flag"][0]
    assert not table["sersic_bad_size_flag"][0]
    # The threshold is relative to the data in the stamp: just under it is not flagged.
    b = prep.bands[0]
    limit = 100 * (b.image.sum() + 5 * np.sqrt((1 / b.weight).sum()))
    assert not _synthetic(scene, np.log(4.0), 0.99 * limit)[0]["sersic_flag"][0]
    assert _synthetic(scene, np.log(4.0), 1.01 * limit)[0]["sersic_bad_flux_flag"][0]


def test_plausible_fit_is_not_flagged(scene):
    table, _ = _synthetic(scene, np.log(4.0), 5000.0)
    assert not table["sersic_flag"][0]


def test_galsim_galaxy_and_star_are_not_flagged(scene):
    images, objects = scene
    t = fit_patch(images, ORIGIN, objects, None, {"r": MIX}, "sersic", SourceFitConfig())
    assert not t["sersic_bad_size_flag"].any() and not t["sersic_bad_flux_flag"].any()
    assert not t["sersic_flag"][0]
    assert abs(t["r_sersicFlux"][0] / 5000.0 - 1) < 0.05 and abs(t["sersic_reffPix"][0] / 4.0 - 1) < 0.1
    # The star, fitted with an extended model, is unresolved: its size ends small, its flux is right.
    assert t["sersic_reffPix"][1] < 0.5 and abs(t["r_sersicFlux"][1] / 5000.0 - 1) < 0.05


@pytest.mark.parametrize("blend_mode", ["joint", "subtract"])
def test_no_usable_band_logs_one_line_without_traceback(scene, caplog, blend_mode):
    objects = Table(scene[1], copy=True)
    objects.add_row(objects[0])
    objects.add_row(objects[1])
    objects["parentObjectId"] = [0, 0, 9, 9]
    with caplog.at_level(logging.DEBUG, logger="lsst.galmix"):
        t = fit_patch({"r": None, "g": None}, ORIGIN, objects, None, {"r": MIX, "g": MIX}, "sersic",
                      SourceFitConfig(blend_mode=blend_mode))
    assert len(t) == 4
    assert t["sersic_no_data_flag"].all() and t["sersic_flag"].all() and t["sersic_missing_band_flag"].all()
    assert not t["sersic_unknown_flag"].any() and np.isnan(t["r_sersicFlux"]).all()
    assert "Traceback" not in caplog.text and "StopIteration" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "no_data" in caplog.records[0].getMessage()

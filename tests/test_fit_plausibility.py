"""Plausibility flags (``bad_size``, ``bad_flux``, ``centroid_moved``, ``flux_excess``, ``shape_collapsed``)
and the no-usable-band path of ``fit_patch``."""

import logging

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.fitting.blend import BandImage
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.optimize import BandInput, SceneFit, SourceSpec
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.plausibility import centroid_moved, flux_excess, implausible_flags
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import Prepared, split_result, write_flags, write_row
from lsst.galmix.fitting.testing import GalaxyTruth, make_scene, moffat_psf, psf_kernel
from lsst.galmix.models.definitions import get_model
from lsst.galmix.schema import SOURCE_FLAGS, FlagSet, empty_columns, source_columns

PSF = moffat_psf(3.0)
MIX = fit_psf_image(psf_kernel(PSF, 31), 4).mixture
ORIGIN = (500, 700)
SERSIC = get_model("sersic")


@pytest.fixture(scope="module")
def scene():
    # A resolved galaxy and a star (n = 0: a GalSim delta function), both at S/N of a few hundred.
    truths = [GalaxyTruth(520.0, 720.0, 5000.0, n=1.5, reff=4.0, q=0.6, position_angle=0.4),
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
    res = SceneFit(theta, np.array([[flux]]), np.eye(n) * 0.01, 900.0, 6, converged=True, at_bound=False,
                    singular=False)
    prep = Prepared([spec], theta, [band], [FlagSet()])
    (out,) = split_result(prep, res)
    table = empty_columns(source_columns(SERSIC, ["r"]), 1)
    write_row(table, 0, out, ["r"], 0.2, None)
    write_flags(table, SERSIC.name, np.array([out.flags.mask]))
    assert prep.flags[0].mask == 0  # the fit's flags are the outcome's, not the preparation's
    return table, prep


def test_registry_declares_fatal_plausibility_flags():
    fatal = {f.name: f.fatal for f in SOURCE_FLAGS}
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


# --- Wrong answers of converged fits: centroid_moved, flux_excess, shape_collapsed -------------------------

STAR_FLUX = 1e8


@pytest.fixture(scope="module")
def star_and_faint_galaxy():
    # A 3000 nJy galaxy 15 px from a very bright star, both isolated rows, no footprints.
    truths = [GalaxyTruth(540.0, 730.0, 3000.0, n=1.0, reff=3.0, q=0.7, position_angle=0.4),
              GalaxyTruth(555.0, 730.0, STAR_FLUX, n=0.0)]
    images, objects = make_scene(truths, {"g": PSF, "r": PSF}, {"g": 0.8, "r": 1.0}, (60, 100),
                                 {"g": 5.0, "r": 5.0}, np.random.default_rng(3), ORIGIN)
    objects["parentObjectId"] = [0, 0]
    return images, objects


@pytest.mark.parametrize("model", ["sersic", "exp"])
def test_faint_galaxy_does_not_take_the_star_flux(star_and_faint_galaxy, model):
    images, objects = star_and_faint_galaxy
    t = fit_patch(images, ORIGIN, objects, None, {"g": MIX, "r": MIX}, model, SourceFitConfig())
    assert len(t) == 2
    # The star is fitted jointly with the galaxy (neighbours without footprints are grouped): its flux is
    # right and its row is not flagged.
    assert abs(t[f"r_{model}Flux"][1] / STAR_FLUX - 1) < 0.01 and not t[f"{model}_flag"][1]
    # The galaxy's row either is flagged or holds a flux of its own order, never the star's.
    flux = t[f"r_{model}Flux"][0]
    assert t[f"{model}_flag"][0] or 0.1 < flux / 3000.0 < 20
    assert flux < 1e-3 * STAR_FLUX


def _flag(table, model, objects, images, footprints=None, resolved=(True, False)):
    m = get_model(model)
    xy = np.column_stack([objects["x"], objects["y"]]).astype(float)
    bands = list(images)
    band_images = [BandImage(*images[b], ORIGIN) for b in bands]
    labels = np.zeros(len(objects), int) if footprints is None else np.arange(1, len(objects) + 1)
    masks = implausible_flags(table, m, bands, xy, np.full(len(objects), 2.5), np.array(resolved), labels,
                              band_images, footprints, 0.01)
    write_flags(table, m.name, masks)
    return int(np.count_nonzero(masks))


def test_fit_that_took_the_neighbour_is_flagged(star_and_faint_galaxy):
    images, objects = star_and_faint_galaxy
    t = fit_patch(images, ORIGIN, objects, None, {"g": MIX, "r": MIX}, "sersic", SourceFitConfig())
    cols = {c: np.array(t[c]) for c in t.colnames}
    # What the galaxy's separate fit returned before neighbours were grouped: the star's centre and flux.
    for c in ("sersic_x", "sersic_y", "r_sersicFlux", "g_sersicFlux", "sersic_reffPix", "sersic_q"):
        cols[c][0] = cols[c][1]
    for c in [c for c in cols if c.startswith("sersic_flag")]:
        cols[c][:] = False
    assert _flag(cols, "sersic", objects, images) == 1
    assert cols["sersic_centroid_moved_flag"][0] and cols["sersic_flux_excess_flag"][0] and cols["sersic_flag"][0]
    assert not cols["sersic_flag"][1]
    # The same with footprints: the galaxy's own footprint holds ~3000 nJy, not 1e8.
    footprints = np.zeros(images["r"][0].shape, np.int32)
    yy, xx = np.mgrid[: footprints.shape[0], : footprints.shape[1]]
    footprints[(xx + ORIGIN[0] - 540) ** 2 + (yy + ORIGIN[1] - 730) ** 2 < 36] = 1
    footprints[(xx + ORIGIN[0] - 555) ** 2 + (yy + ORIGIN[1] - 730) ** 2 < 36] = 2
    cols["sersic_flux_excess_flag"][:] = False
    _flag(cols, "sersic", objects, images, footprints)
    assert cols["sersic_flux_excess_flag"][0] and not cols["sersic_flux_excess_flag"][1]


@pytest.mark.parametrize("what", ["q", "reff"])
def test_collapsed_shape_is_fatal_for_resolved_objects_only(scene, what):
    images, objects = scene
    t = fit_patch(images, ORIGIN, objects, None, {"r": MIX}, "sersic", SourceFitConfig())
    cols = {c: np.array(t[c]) for c in t.colnames}
    assert not cols["sersic_flag"].any()
    # q -> 0 (the hold-out galaxy's 1.4e-8) or reff at its lower bound, for the galaxy and for the star.
    if what == "q":
        cols["sersic_q"][:] = 1.4e-8
    else:
        cols["sersic_reffPix"][:] = 0.01
    _flag(cols, "sersic", objects, images)
    assert cols["sersic_shape_collapsed_flag"][0] and cols["sersic_flag"][0]
    # A star is a point: its axis ratio and size are unconstrained, nothing collapsed.
    assert not cols["sersic_shape_collapsed_flag"][1] and not cols["sersic_flag"][1]


def test_resolved_galaxy_fitted_as_a_line_is_flagged_by_fit_patch(scene, monkeypatch):
    # End to end: the optimizer returns a collapsed ellipse; fit_patch's row carries the fatal flag.
    from lsst.galmix.fitting import source

    real = source.split_result

    def collapse(prep, res):
        res.theta[3] = 18.0  # eta1: q = exp(-18) = 1.5e-8
        return real(prep, res)

    monkeypatch.setattr(source, "split_result", collapse)
    images, objects = scene
    t = fit_patch(images, ORIGIN, objects[:1], None, {"r": MIX}, "sersic", SourceFitConfig(residual_threshold=0))
    assert t["sersic_q"][0] < 1e-3 and t["sersic_shape_collapsed_flag"][0] and t["sersic_flag"][0]


def test_registry_declares_the_new_fatal_flags():
    fatal = {f.name: f.fatal for f in SOURCE_FLAGS}
    assert all(fatal[n] for n in ("bad_position", "centroid_moved", "flux_excess", "shape_collapsed"))


def test_centroid_and_flux_rules():
    others = np.array([[20.0, 0.0]])
    assert not centroid_moved((0.0, 0.0), (2.5, 0.0), 1.0, others)  # within 3 px
    assert centroid_moved((0.0, 0.0), (3.5, 0.0), 1.0, others)  # beyond max(3 px, 2 sigma)
    assert not centroid_moved((0.0, 0.0), (5.0, 0.0), 3.0, others)  # 2 sigma = 6 px
    assert centroid_moved((0.0, 0.0), (2.5, 0.0), 1.0, np.array([[4.0, 0.0]]))  # nearer the neighbour
    assert not flux_excess(5000.0, 3000.0, 50.0)
    assert flux_excess(1e8, 3000.0, 50.0)
    assert not flux_excess(400.0, -10.0, 50.0)  # faint: within 10 sigma
    assert not flux_excess(np.nan, 3000.0, 50.0)

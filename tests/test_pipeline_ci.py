"""Integration: the CI-size simulated repository through galmix_ci.yaml with a real ``pipetask run``.

Checks outputs, not just that it ran: one row per detected object, matching, photometric accuracy of
stars and galaxies against the truth, metrics and PNG plots, a second run into a new collection, a
patch with a corrupted band, and the blend inspector.
"""

import fcntl
import io
import os
import subprocess

import matplotlib.image
import numpy as np
import pytest
from butler_helpers import run_task_on_patch
from lsst.daf.butler import Butler
from lsst.galmix.analysis import flux_to_mag
from lsst.galmix.analysis.metrics import nan_error_fraction
from lsst.galmix.demo import pipetask_executable, run_pipeline, summarize
from lsst.galmix.schema import flux_column
from lsst.galmix.sim.make_repo import make_repo

OUT = "galmix/ci_test"
TRACT = {"skymap": "galmix_sim", "tract": 0}
MODELS = ("sersic", "exp")


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    # Under pytest-xdist the tests of this module may land on several workers: the first one builds the
    # repository and runs the pipeline, the others wait on the lock and reuse it.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "galmix_ci_shared"
    else:
        root = tmp_path_factory.mktemp("ci")
    root.mkdir(exist_ok=True)
    repo = str(root / "repo")
    with open(root.parent / "galmix_ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / "done").exists():
                make_repo(repo, size="ci", seed=1)
                run_pipeline(repo, OUT, str(root / "pipetask.log"))
                (root / "done").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return repo, root


@pytest.fixture(scope="module")
def butler(ci_run):
    return Butler.from_config(ci_run[0], collections=[OUT])


@pytest.fixture(scope="module")
def matched(butler):
    return butler.get("matched_truth_summary_objectTable_tract_galmix", TRACT)


def test_one_row_per_detected_object(butler):
    n_total = 0
    object_refs = butler.query_datasets("galmix_objects", collections=OUT, explain=False)
    assert len(object_refs) == 4  # the CI tract has 2 x 2 patches
    for ref in object_refs:
        patch = ref.dataId["patch"]
        objects = butler.get(ref)
        assert len(objects) > 20
        n_total += len(objects)
        for model in MODELS:
            fits = butler.get(f"galmix_{model}_patch", TRACT, patch=patch)
            np.testing.assert_array_equal(fits["objectId"], objects["objectId"])
            fitted = np.isfinite(fits[f"r_{model}Flux"])
            # Every row is fitted or says why not.
            assert np.all(fitted | fits[f"{model}_flag"])
            assert fitted.mean() > 0.9
    table = butler.get("objectTable_tract_galmix", TRACT)
    assert len(table) == n_total
    assert {"g_sersicFlux", "g_expFlux", "sersic_index", "exp_reff", "isPrimary", "patch"} <= set(table.colnames)
    # Patch overlaps: each object of the tract's inner area is primary once.
    assert 0 < table["isPrimary"].sum() < len(table)


def test_catalogue_is_usable_as_it_is(butler, matched):
    """Rubin's identity columns, finite errors for every unflagged row, unconstrained fluxes."""
    table = butler.get("objectTable_tract_galmix", TRACT)
    assert table.colnames[:7] == ["objectId", "coord_ra", "coord_dec", "tract", "patch", "refBand",
                                  "refExtendedness"]
    assert np.isfinite(table["coord_ra"]).all() and np.isfinite(table["coord_dec"]).all()
    assert (table["tract"] == 0).all() and set(table["refBand"]) <= set("ugrizy")
    bands = [b for b in "ugrizy" if f"{b}_psfFlux" in table.colnames]
    assert len(bands) >= 4 and f"{bands[0]}_psfFluxErr" in table.colnames
    # Point sources by the reference catalogue are point-like by refExtendedness, mostly.
    stars = matched["match_hasRef"] & matched["match_hasObject"] & matched["refcat_is_pointsource"]
    stars &= flux_to_mag(matched["refcat_flux_r"]) < 22
    assert stars.sum() >= 5 and np.mean(matched["refExtendedness"][stars] == 0) > 0.8
    for model in MODELS + ("point",):
        nan = nan_error_fraction(table, model, bands)
        assert nan["n_unflagged"] > 300 and nan["n_nan"] == 0, (model, nan)
        # Below the noise, fluxes scatter around zero: some are negative, none is clipped at zero.
        good = ~np.asarray(table[f"{model}_flag"], bool)
        flux = np.concatenate([np.asarray(table[flux_column(model, b)])[good] for b in bands])
        assert (flux < 0).any() and not (flux == 0).any()
    for model in MODELS:
        metrics = butler.get(f"galmix_{model}_matchedMetrics", TRACT)
        assert metrics["nanFluxErr"]["n_nan"] == 0 and metrics["nanFluxErr"]["n_unflagged"] > 100
        assert metrics["summary"]["stars"]["fluxChiSnr"]["r"]["count"] >= 5


def test_matched_fraction(matched):
    primary = matched["match_hasObject"] & matched["isPrimary"]
    bright = primary & (flux_to_mag(matched["r_sersicFlux"]) < 24)
    purity = (bright & matched["match_hasRef"]).sum() / bright.sum()
    assert purity > 0.9  # measured 0.98
    ref_bright = matched["match_hasRef"] & (flux_to_mag(matched["refcat_flux_r"]) < 23)
    completeness = (ref_bright & matched["match_hasObject"]).sum() / ref_bright.sum()
    assert completeness > 0.75  # measured 0.83 (25 of 30 references)
    assert np.nanmax(matched["match_distance"]) <= 0.5


def _dmag(matched, model, band, stars, lo, hi):
    ref_r = flux_to_mag(matched["refcat_flux_r"])
    sel = (
        matched["match_hasRef"] & matched["match_hasObject"] & matched["isPrimary"]
        & ~matched[f"{model}_flag"] & (matched["refcat_is_pointsource"] == stars) & (ref_r > lo) & (ref_r < hi)
    )
    return flux_to_mag(matched[f"{band}_{model}Flux"][sel]) - flux_to_mag(matched[f"refcat_flux_{band}"][sel])


def test_star_photometry(matched):
    for model in MODELS:
        for band in "gri":
            d = _dmag(matched, model, band, True, 17, 23)
            assert len(d) >= 5
            assert abs(np.median(d)) < 0.008, (model, band, np.median(d))


def test_galaxy_photometry(matched):
    # Bounds set from the measured values of this deterministic repository (seed 1): exp +0.017, Sersic
    # -0.0005 (before projected bounds and residual sources, Sersic was -0.09). The CI tract has only 9 such
    # galaxies, so these guard against regressions; the science targets are measured on the medium
    # repository (doc/pipelines.rst).
    for model, bound in (("exp", 0.04), ("sersic", 0.02)):
        d = _dmag(matched, model, "r", False, 20, 23)
        assert len(d) >= 5
        assert abs(np.median(d)) < bound, (model, np.median(d))


def test_metrics_and_plots(butler):
    for model in MODELS:
        metrics = butler.get(f"galmix_{model}_matchedMetrics", TRACT)
        assert metrics["model"] == model
        assert metrics["n_matched"] > 100
        assert set(metrics["summary"]) == {"galaxies", "stars"}
        assert metrics["summary"]["stars"]["magDiff"]["r"]["count"] >= 5
    refs = [
        ref
        for dt in butler.registry.queryDatasetTypes("galmix_*_Plot")
        for ref in butler.query_datasets(dt.name, collections=OUT, explain=False)
    ]
    assert len(refs) == 2 * (6 + 6 + 3 + 3)
    for ref in refs:
        data = butler.getURI(ref).read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert image.shape[0] > 300 and image[..., :3].std() > 0.05


def test_summary_text(ci_run):
    text = summarize(ci_run[0], OUT)
    assert "objectTable_tract_galmix" in text and "median dmag" in text and "fitCoaddMultibandSersic" in text
    assert "NaN flux errors among unflagged rows: 0 of" in text and "flux chi at S/N >= 10" in text


def test_second_run_into_new_collection(ci_run, butler, matched):
    repo, root = ci_run
    run_pipeline(
        repo, "galmix/ci_test_rematch", str(root / "rematch.log"),
        pipeline="resource://lsst.galmix/pipelines/galmix_match_dc2.yaml",
        extra=["-i", OUT, "-c", "parameters:models=[sersic, exp]"],
    )
    again = Butler.from_config(repo, collections=["galmix/ci_test_rematch"])
    ref = again.find_dataset("matched_truth_summary_objectTable_tract_galmix", TRACT)
    assert ref.run.startswith("galmix/ci_test_rematch/")
    redo = again.get(ref)
    assert len(redo) == len(matched)
    np.testing.assert_array_equal(redo["objectId"], matched["objectId"])


def test_corrupted_band(ci_run, butler):
    repo = ci_run[0]
    writer = Butler.from_config(repo, writeable=True)
    data_id = TRACT | {"patch": 0, "band": "r"}
    coadd = writer.get("deep_coadd_cell", data_id, collections="galmix/sim")
    coadd.image.array[...] = np.nan
    writer.collections.register("galmix/corrupt")
    writer.put(coadd, "deep_coadd_cell", data_id, run="galmix/corrupt")
    exec_butler = run_task_on_patch(repo, "resource://lsst.galmix/pipelines/galmix_fit.yaml#fitCoaddMultibandSersic",
                                    ["galmix/corrupt", OUT, "galmix/sim"], "galmix/corrupt_out")
    fits = exec_butler.get("galmix_sersic_patch", TRACT | {"patch": 0}, collections="galmix/corrupt_out")
    good = butler.get("galmix_sersic_patch", TRACT | {"patch": 0})
    np.testing.assert_array_equal(fits["objectId"], good["objectId"])
    assert np.all(np.isnan(fits["r_sersicFlux"]))
    assert np.all(fits["sersic_missing_band_flag"] | fits["sersic_nan_pixels_flag"])
    for band in "giz":
        was_fitted = np.isfinite(good[f"{band}_sersicFlux"])
        assert np.isfinite(fits[f"{band}_sersicFlux"][was_fitted]).mean() > 0.9


def test_blend_inspector(ci_run, butler, tmp_path):
    table = butler.get("objectTable_tract_galmix", TRACT)
    child = int(table["objectId"][np.flatnonzero(table["parentObjectId"] != 0)[0]])
    out = tmp_path / "blend.png"
    exe = str(pipetask_executable()).replace("pipetask", "galmix-inspect")
    proc = subprocess.run(
        [exe, ci_run[0], "--collections", OUT, "--object", str(child), "--model", "sersic", "--output", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    image = matplotlib.image.imread(str(out))
    assert image.shape[0] >= 1000 and image[..., :3].std() > 0.05
    bad = subprocess.run([exe, ci_run[0], "--collections", OUT, "--object", "-5"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 1 and "not in any" in bad.stderr


def test_fit_task_edge_cases(butler):
    from lsst.galmix.tasks import (
        FitCoaddMultibandConfig,
        FitCoaddMultibandTask,
        FitCoaddPsfConfig,
        FitCoaddPsfTask,
    )

    patch = TRACT | {"patch": 0}
    coadds = {b: butler.get("deep_coadd_cell", patch | {"band": b}) for b in "gr"}
    psf = {b: butler.get("galmix_psf_fits", patch | {"band": b}) for b in "gr"}
    objects = butler.get("galmix_objects", patch)
    footprints = butler.get("galmix_footprints", patch)
    config = FitCoaddMultibandConfig()
    config.bands = ["g", "r", "i"]  # i has no coadd here
    task = FitCoaddMultibandTask(config=config)
    assert len(task.run(coadds, objects[:0], footprints, psf).outputTable) == 0  # empty catalogue
    isolated = objects[objects["parentObjectId"] == 0][:4]
    out = task.run(coadds, isolated, footprints, psf).outputTable
    assert np.all(np.isnan(out["i_sersicFlux"])) and np.all(out["sersic_missing_band_flag"])
    assert np.all(np.isfinite(out["r_sersicFlux"]))
    nothing = task.run({}, isolated, footprints, {}).outputTable
    assert len(nothing) == len(isolated) and np.all(nothing["sersic_flag"])
    # PSF from the coadd kernel at each object instead of galmix_psf_fits: same fluxes within 1%.
    config.usePsfFits = False
    own = FitCoaddMultibandTask(config=config).run(coadds, isolated, footprints, {}).outputTable
    np.testing.assert_allclose(own["r_sersicFlux"], out["r_sersicFlux"], rtol=0.01)
    psf_config = FitCoaddPsfConfig()
    psf_config.mode = "object"
    per_object = FitCoaddPsfTask(config=psf_config).run(coadds["r"].psf, isolated).psfFits
    assert len(per_object) == len(isolated) and not per_object["psf_flag"].any()
    np.testing.assert_allclose(per_object["x"], isolated["x"])

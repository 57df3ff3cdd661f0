"""consolidateTract, matchTruth, diffMatched and analyzeMatched run on a synthetic Butler repository."""

import io

import numpy as np
import pytest
from astropy.table import Table
from butler_helpers import BANDS, SKYMAP, make_test_repo, register_and_put, rng_positions
from lsst.galmix.schema import empty_source_table
from lsst.galmix.tasks import (
    AnalyzeMatchedTask,
    ConsolidateTractTask,
    DiffMatchedTask,
    MatchTruthTask,
)
from lsst.pipe.base import Pipeline
from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor

N_PER_PATCH = 150
GAL_BIAS = {"g": 0.03}  # injected galaxy magnitude bias per band
PIXEL = 0.2  # arcsec


def _truth():
    ras, decs = [], []
    for p in range(2):
        ra, dec = rng_positions(N_PER_PATCH + 20, p, seed=p)
        ras.append(ra)
        decs.append(dec)
    ra, dec = np.concatenate(ras), np.concatenate(decs)
    n = len(ra)
    rng = np.random.default_rng(11)
    t = Table()
    t["id"] = np.arange(1, n + 1, dtype=np.int64)
    t["ra"], t["dec"] = ra, dec
    mag = rng.uniform(19, 25, n)
    for b in BANDS:
        t[f"flux_{b}"] = 10 ** (-0.4 * (mag - 31.4))
    t["is_pointsource"] = rng.random(n) < 0.3
    t["truth_type"] = np.where(t["is_pointsource"], 2, 1)
    t["is_unique_truth_entry"] = np.ones(n, dtype=bool)
    return t


def _patch_table(model, truth, patch, rows, id0, rng):
    t = empty_source_table(model, list(BANDS), len(rows))
    t["objectId"][:] = id0 + np.arange(len(rows))
    t["patch"][:] = patch
    t["detect_isPrimary"][:] = True
    star = np.asarray(truth["is_pointsource"][rows])
    for b in BANDS:
        f = np.asarray(truth[f"flux_{b}"][rows])
        err = 0.01 * f + 3.0
        bias = np.where(star, 1.0, 10 ** (-0.4 * GAL_BIAS.get(b, 0.0)))
        t[f"{b}_{model}Flux"][:] = f * bias + rng.normal(0, 1, len(rows)) * err
        t[f"{b}_{model}FluxErr"][:] = err
    dec0 = -5.0
    t[f"{model}_ra"][:] = np.asarray(truth["ra"][rows]) + rng.normal(0, 0.01, len(rows)) / 3600
    t[f"{model}_dec"][:] = np.asarray(truth["dec"][rows]) + rng.normal(0, 0.01, len(rows)) / 3600
    t[f"{model}_x"][:] = (t[f"{model}_ra"] - 10.0) * np.cos(np.deg2rad(dec0)) * 3600 / PIXEL
    t[f"{model}_y"][:] = (t[f"{model}_dec"] - dec0) * 3600 / PIXEL
    t[f"{model}_xErr"][:] = 0.05
    t[f"{model}_yErr"][:] = 0.05
    t[f"{model}_n_pix"][:] = 100
    if f"{model}_reff" in t.colnames:
        t[f"{model}_reff"][:] = np.where(star, 0.02, 0.6)
    t[f"{model}_flag"][:] = False
    return t


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("repo"))
    butler = make_test_repo(root)
    truth = _truth()
    register_and_put(butler, "truth_summary", ("skymap", "tract"), "ArrowAstropy", truth, "test/in", tract=0)
    n = N_PER_PATCH + 20
    # Patch 0 detects its own objects (20 faint-end ones missed) plus the first object of patch 1,
    # which patch 1 detects too: one duplicate across the overlap.
    rows = {0: np.r_[np.arange(N_PER_PATCH), n], 1: np.arange(n, n + N_PER_PATCH)}
    for model in ("sersic", "exp"):
        for patch, r in rows.items():
            table = _patch_table(model, truth, patch, r, 1000 * (patch + 1), np.random.default_rng(patch))
            register_and_put(
                butler, f"galmix_{model}_patch", ("skymap", "tract", "patch"), "ArrowAstropy", table,
                "test/in", tract=0, patch=patch,
            )
    return root, truth


def _pipeline():
    p = Pipeline("tract-tasks")
    p.addTask(ConsolidateTractTask, "consolidateTract")
    p.addConfigOverride("consolidateTract", "models", ["sersic", "exp"])
    p.addTask(MatchTruthTask, "matchTruth")
    p.addTask(DiffMatchedTask, "diffMatched")
    for model in ("sersic", "exp"):
        label = f"analyzeMatched_{model}"
        p.addTask(AnalyzeMatchedTask, label)
        p.addConfigOverride(label, "analysis.model", model)
        p.addConfigOverride(label, "analysis.mag_min", 18.0)
        p.addConfigOverride(label, "analysis.mag_max", 26.0)
    return p


@pytest.fixture(scope="module")
def outputs(repo):
    root, truth = repo
    butler = SimplePipelineExecutor.prep_butler(root, inputs=["test/in"], output="test/out")
    executor = SimplePipelineExecutor.from_pipeline(_pipeline(), butler=butler, where=f"skymap='{SKYMAP}'")
    quanta = executor.run(register_dataset_types=True)
    return butler, truth, quanta


def test_quanta_ran(outputs):
    _, _, quanta = outputs
    assert len(quanta) == 5


def test_consolidated_table(outputs):
    butler, _, _ = outputs
    t = butler.get("objectTable_tract_galmix", skymap=SKYMAP, tract=0)
    assert len(t) == 2 * N_PER_PATCH + 1
    assert len(np.unique(t["objectId"])) == len(t)
    assert {"g_sersicFlux", "g_expFlux", "exp_reff", "sersic_index", "isPrimary", "patch"} <= set(t.colnames)
    assert t.colnames.count("detect_isPrimary") == 1
    # The duplicate: exactly one of the two copies stays primary.
    assert int((~t["isPrimary"]).sum()) == 1
    assert str(t["g_sersicFlux"].unit) == "nJy"


def test_match_tables(outputs):
    butler, truth, _ = outputs
    ref = butler.get("match_ref_truth_summary_objectTable_tract_galmix", skymap=SKYMAP, tract=0)
    tgt = butler.get("match_target_truth_summary_objectTable_tract_galmix", skymap=SKYMAP, tract=0)
    obj = butler.get("objectTable_tract_galmix", skymap=SKYMAP, tract=0)
    assert len(ref) == len(truth) and len(tgt) == len(obj)
    matched = ref["match_row"] >= 0
    assert matched.sum() == 2 * N_PER_PATCH
    # Every match points back at the reference that was simulated for it.
    ids = obj["objectId"][ref["match_row"][matched]]
    patch_of = obj["patch"][ref["match_row"][matched]]
    assert np.all((ids // 1000 - 1) == patch_of)
    np.testing.assert_array_less(ref["match_distance"][matched], 0.1)
    # The non-primary duplicate is not matched.
    assert np.all(tgt["match_row"][~obj["isPrimary"]] == -1)


def test_matched_and_metrics(outputs):
    butler, truth, _ = outputs
    m = butler.get("matched_truth_summary_objectTable_tract_galmix", skymap=SKYMAP, tract=0)
    pairs = m["match_hasRef"] & m["match_hasObject"]
    assert pairs.sum() == 2 * N_PER_PATCH
    assert (m["match_hasRef"] & ~m["match_hasObject"]).sum() == len(truth) - 2 * N_PER_PATCH
    assert {"refcat_flux_r", "refcat_is_pointsource", "match_distance", "g_sersicFlux"} <= set(m.colnames)
    metrics = butler.get("galmix_sersic_matchedMetrics", skymap=SKYMAP, tract=0)
    gal = metrics["summary"]["galaxies"]["magDiff"]
    assert gal["g"]["median"] == pytest.approx(0.03, abs=0.006)
    assert gal["r"]["median"] == pytest.approx(0.0, abs=0.006)
    assert metrics["summary"]["stars"]["magDiff"]["g"]["median"] == pytest.approx(0.0, abs=0.006)
    assert metrics["summary"]["galaxies"]["colorDiff"]["g-r"]["median"] == pytest.approx(0.03, abs=0.008)
    assert metrics["n_matched"] == 2 * N_PER_PATCH
    assert butler.get("galmix_exp_matchedMetrics", skymap=SKYMAP, tract=0)["model"] == "exp"


def test_plots_are_png_files(outputs):
    butler, _, _ = outputs
    refs = list(butler.registry.queryDatasets("galmix_sersic_*_Plot", collections="test/out"))
    assert len(refs) == 2 * 6 + 3 + 3  # mag diff/chi per band, 3 colours, position, completeness, size
    uri = butler.getURI(refs[0])
    data = uri.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # The Plot formatter writes PNG only; decode the file itself.
    import matplotlib.image

    for ref in refs:
        image = matplotlib.image.imread(io.BytesIO(butler.getURI(ref).read()), format="png")
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not blank


def test_gc_paused_restores_the_collector_state():
    import gc

    from lsst.galmix.tasks.analyze_matched import _gc_paused

    assert gc.isenabled()
    with _gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), _gc_paused():
        raise RuntimeError("a failing put")
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()

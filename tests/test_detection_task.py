"""detectCoaddSources on the CI repository, run through SimplePipelineExecutor: outputs vs truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import vstack
from lsst.daf.butler import Butler
from lsst.galmix.analysis.stats import flux_to_mag
from lsst.galmix.data import SIZES, TractGeometry
from lsst.galmix.schema import object_columns
from lsst.galmix.sim.observing import BAND_CONDITIONS
from scipy.spatial import cKDTree

SKY = {"skymap": "galmix_sim", "tract": 0}


@pytest.fixture(scope="module")
def butler(ci_repo, ci_detect_collection):
    return Butler.from_config(ci_repo, collections=ci_detect_collection)


@pytest.fixture(scope="module")
def objects(butler):
    return {p: butler.get("galmix_objects", **SKY, patch=p) for p in range(4)}


def test_one_row_per_detection_and_schema(butler, objects):
    for patch, table in objects.items():
        labels = butler.get("galmix_footprints", **SKY, patch=patch)
        coadd = butler.get("deep_coadd_cell", **SKY, patch=patch, band="r")
        assert labels.dtype == np.int32 and labels.shape == coadd.image.array.shape
        assert list(table.colnames) == list(object_columns(list("ugrizy")))
        assert set(np.unique(labels)) - {0} == set(table["footprintLabel"])
        assert len(table) > 50 and np.all(table["patch"] == patch)
        blends = table[table["nChild"] > 1]
        for parent in set(blends["parentObjectId"]):
            assert (
                np.sum(blends["parentObjectId"] == parent)
                == blends["nChild"][blends["parentObjectId"] == parent][0]
            )
    ids = np.concatenate([t["objectId"] for t in objects.values()])
    assert len(np.unique(ids)) == len(ids) and ids.min() > 0


def test_no_object_primary_in_two_patches(objects):
    geometry = TractGeometry(SIZES["ci"])
    primary = vstack([t[t["detect_isPrimary"]] for t in objects.values()])
    # Primary means: centroid in this patch's inner box, which tile the tract.
    assert np.all(geometry.inner_patch_of(primary["x"], primary["y"]) == primary["patch"])
    # The same source detected in several patches is primary in one: no two primaries coincide.
    dist, _ = cKDTree(np.c_[primary["x"], primary["y"]]).query(np.c_[primary["x"], primary["y"]], k=2)
    assert dist[:, 1].min() > 1.0
    # Overlap detections exist and are not primary in the non-owning patch.
    everything = vstack(list(objects.values()))
    assert np.sum(~everything["detect_isPrimary"]) > 20


def test_completeness_isolated_galaxies_one_mag_above_depth(butler, objects):
    geometry = TractGeometry(SIZES["ci"])
    truth = butler.get("truth_summary", **SKY)
    primary = vstack([t[t["detect_isPrimary"]] for t in objects.values()])
    xy = np.c_[truth["x"], truth["y"]]
    neighbour, _ = cKDTree(xy).query(xy, k=2)
    mag_r = flux_to_mag(truth["flux_r"])
    coadd0 = butler.get("deep_coadd_cell", **SKY, patch=0, band="r")
    x0, y0 = coadd0.bbox.x.start, coadd0.bbox.y.start
    no_data = coadd0.mask.get("NO_DATA")
    ix = np.clip(np.round(truth["x"]).astype(int) - x0, 0, no_data.shape[1] - 1)
    iy = np.clip(np.round(truth["y"]).astype(int) - y0, 0, no_data.shape[0] - 1)
    # Away from NO_DATA by more than 3 arcsec.
    near_no_data = no_data[iy, ix] | (truth["x"] + truth["y"] < 50 + 0.4 * 300 + 15 * np.sqrt(2))
    selected = (
        (truth["truth_type"] == 1)
        & (mag_r < BAND_CONDITIONS["r"].depth5 - 1.0)
        & (neighbour[:, 1] > 15)
        & (geometry.inner_patch_of(truth["x"], truth["y"]) >= 0)
        & ~near_no_data
    )
    assert selected.sum() >= 40
    distance, _ = cKDTree(np.c_[primary["x"], primary["y"]]).query(xy[selected])
    completeness = np.mean(distance < 3.0)
    print(
        f"completeness of {selected.sum()} isolated galaxies with r < {BAND_CONDITIONS['r'].depth5 - 1}: "
        f"{completeness:.3f}"
    )
    assert completeness >= 0.95


def test_positions_and_fluxes_against_truth(butler, objects):
    truth = butler.get("truth_summary", **SKY)
    primary = vstack([t[t["detect_isPrimary"]] for t in objects.values()])
    distance, index = cKDTree(np.c_[truth["x"], truth["y"]]).query(np.c_[primary["x"], primary["y"]])
    matched = distance < 2.0
    assert matched.mean() > 0.8
    stars = matched & truth["is_pointsource"][index] & (truth["flux_r"][index] < 2e5)
    sky_sep = (
        np.hypot(
            (primary["ra"][stars] - truth["ra"][index[stars]])
            * np.cos(np.radians(truth["dec"][index[stars]])),
            primary["dec"][stars] - truth["dec"][index[stars]],
        )
        * 3600
    )
    assert np.median(sky_sep) < 0.05
    bright = (
        matched
        & (truth["flux_r"][index] > 1000)
        & (primary["nChild"] == 1)
        & ~primary["detect_saturated_center_flag"]
    )
    ratio = primary["r_initFlux"][bright] / truth["flux_r"][index[bright]]
    assert 0.6 < np.median(ratio) < 1.05

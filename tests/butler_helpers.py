"""Minimal in-test Butler repositories for running galmix tasks on synthetic tables."""

from __future__ import annotations

import lsst.sphgeom
import numpy as np
from lsst.daf.butler import Butler, DatasetType
from lsst.pipe.base import Pipeline
from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor

SKYMAP = "galmix_test"
BANDS = "ugrizy"


def _box(ra0: float, dec0: float, size: float) -> lsst.sphgeom.ConvexPolygon:
    corners = [(ra0, dec0), (ra0 + size, dec0), (ra0 + size, dec0 + size), (ra0, dec0 + size)]
    return lsst.sphgeom.ConvexPolygon(
        [lsst.sphgeom.UnitVector3d(lsst.sphgeom.LonLat.fromDegrees(r, d)) for r, d in corners]
    )


def make_test_repo(root: str, n_patch: int = 2, tract: int = 0) -> Butler:
    """Create a repository with instrument, bands, one skymap, one tract and ``n_patch`` patches.

    Parameters
    ----------
    root : `str`
        Directory of the new repository.
    n_patch : `int`
        Number of patches (ids 0..n_patch-1 in one row).
    tract : `int`
        Tract id.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        Writeable butler.
    """
    Butler.makeRepo(root)
    butler = Butler.from_config(root, writeable=True)
    butler.registry.insertDimensionData("instrument", {"name": "GalmixTest"})
    butler.registry.insertDimensionData(
        "physical_filter", *[{"instrument": "GalmixTest", "name": f"t_{b}", "band": b} for b in BANDS]
    )
    butler.registry.insertDimensionData(
        "skymap",
        {"name": SKYMAP, "hash": b"galmix-test", "tract_max": 10, "patch_nx_max": n_patch, "patch_ny_max": 1},
    )
    butler.registry.insertDimensionData(
        "tract", {"skymap": SKYMAP, "id": tract, "region": _box(10.0, -5.0, 0.1 * n_patch)}
    )
    butler.registry.insertDimensionData(
        "patch",
        *[
            {"skymap": SKYMAP, "tract": tract, "id": p, "cell_x": p, "cell_y": 0,
             "region": _box(10.0 + 0.1 * p, -5.0, 0.1)}
            for p in range(n_patch)
        ],
    )
    return butler


def register_and_put(butler: Butler, name: str, dimensions: tuple[str, ...], storage_class: str, obj, run: str,
                     **data_id) -> None:
    """Register a dataset type (if needed) and put one dataset."""
    dt = DatasetType(name, dimensions, storage_class, universe=butler.dimensions)
    butler.registry.registerDatasetType(dt)
    butler.registry.registerRun(run)
    butler.put(obj, dt, run=run, skymap=SKYMAP, **data_id)


def rng_positions(n: int, patch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random sky positions inside a patch of `make_test_repo`."""
    rng = np.random.default_rng(seed)
    return 10.0 + 0.1 * patch + rng.uniform(0.005, 0.095, n), -5.0 + rng.uniform(0.005, 0.095, n)


def run_task_on_patch(repo: str, task_uri: str, inputs: list[str], output: str, patch: int = 0) -> Butler:
    """Run one task of a shipped pipeline (``<pipeline uri>#<label>``) on one patch of tract 0.

    Returns the executor's butler (collections: ``output``); asserts that exactly one quantum ran.
    """
    butler = SimplePipelineExecutor.prep_butler(repo, inputs=inputs, output=output)
    executor = SimplePipelineExecutor.from_pipeline(
        Pipeline.from_uri(task_uri), butler=butler,
        where=f"skymap = 'galmix_sim' AND tract = 0 AND patch = {patch}",
    )
    assert len(executor.run(register_dataset_types=True)) == 1
    return butler

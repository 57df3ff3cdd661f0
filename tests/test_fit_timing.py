"""Per-object fit times and work in fit_patch tables.

Timings are never compared with each other or with thresholds here (the machine is shared): the tests
check that each row carries its own measurement and that the work a fit does follows its object.
"""

import time

import numpy as np
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import SourceFitConfig
from lsst.galmix.fitting.testing import GalaxyTruth, make_scene, moffat_psf, psf_kernel


def test_time_and_work_are_per_object_not_the_batch_average():
    psf = moffat_psf(3.5)
    mix = fit_psf_image(psf_kernel(psf, 41), 2).mixture
    # A compact faint source (small stamp) and a large one (stamp 4x wider, ~16x the pixels).
    truths = [GalaxyTruth(40.2, 40.1, 500.0, n=1.0, reff=1.0), GalaxyTruth(200.3, 120.4, 5e4, n=1.0, reff=12.0)]
    images, objects = make_scene(truths, {"r": psf}, {"r": 1.0}, (240, 320), {"r": 1.0},
                                 np.random.default_rng(3))
    t0 = time.perf_counter()
    table = fit_patch(images, (0, 0), objects, None, {"r": mix}, "exp", SourceFitConfig(stamp_max=64))
    total = time.perf_counter() - t0
    assert not table["exp_flag"].any()
    # Together the rows' times fit in the call (they exclude the patch-level work).
    times = np.asarray(table["exp_time"])
    assert (times > 0).all() and times.sum() <= total
    # Each row has its own time: a batch average would give both rows the same value.
    assert times[0] != times[1]
    # The compact source's fit skips the pixels beyond its small stamp: far fewer pixels per iteration.
    n_pix = np.asarray(table["exp_nPix"])
    assert 8 * n_pix[0] < n_pix[1]
    assert (np.asarray(table["exp_nIter"]) > 0).all()


def test_blend_children_have_their_own_times():
    psf = moffat_psf(3.5)
    mix = fit_psf_image(psf_kernel(psf, 41), 2).mixture
    truths = [GalaxyTruth(30.2, 30.1, 2000.0, n=1.0, reff=2.0), GalaxyTruth(38.3, 31.4, 3000.0, n=1.0, reff=3.0)]
    images, objects = make_scene(truths, {"r": psf}, {"r": 1.0}, (64, 72), {"r": 1.0}, np.random.default_rng(4))
    objects["parentObjectId"] = [7, 7]
    for mode in ("joint", "subtract"):
        t0 = time.perf_counter()
        table = fit_patch(images, (0, 0), objects, None, {"r": mix}, "exp", SourceFitConfig(blend_mode=mode))
        total = time.perf_counter() - t0
        assert not table["exp_flag"].any()
        assert (table["exp_time"] > 0).all() and table["exp_time"].sum() <= total

"""The stage timer and the per-quantum split of fitCoaddMultiband and fitCoaddPsf: the stages cover the
quantum, one log line and the metadata report them. Timings are never compared with limits, only with each
other."""

import logging
import threading
import time

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import GalaxyTruth, make_scene, moffat_psf, psf_kernel
from lsst.galmix.fitting.timing import StageTimer, stage
from lsst.galmix.tools.report import OVERHEAD_STAGES, format_timings, stage_seconds, task_timings
from lsst.pipe.base import Pipeline
from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def _in_stage(timer: StageTimer) -> None:
    # Another thread: neither the timer nor the active-timer lookup records anything.
    with timer.stage("thread"), stage("thread"):
        _spin(0.005)


def test_stages_are_exclusive_and_sum_to_the_block():
    timer = StageTimer()
    with stage("nowhere"):  # no active timer: nothing is recorded
        _spin(0.01)
    t0 = time.process_time()
    with timer.active(), timer.stage("outer"):
        _spin(0.02)
        with stage("inner"):
            _spin(0.03)
            worker = threading.Thread(target=_in_stage, args=(timer,))
            worker.start()
            worker.join()
        _spin(0.01)
    total = time.process_time() - t0
    assert set(timer.cpu) == {"outer", "inner"}
    assert timer.cpu["inner"] >= 0.03 and timer.cpu["outer"] >= 0.03
    assert timer.total_cpu == pytest.approx(total, abs=2e-3)
    assert set(timer.as_dict()) == {"outerCpuSeconds", "outerWallSeconds", "innerCpuSeconds", "innerWallSeconds"}


def test_fit_patch_reports_its_stages():
    psf = moffat_psf(3.5)
    mix = fit_psf_image(psf_kernel(psf, 41), 2).mixture
    truths = [GalaxyTruth(40.2, 40.1, 3000.0, n=1.0, reff=2.0), GalaxyTruth(100.2, 60.1, 2000.0, n=1.0, reff=2.0),
              GalaxyTruth(106.3, 62.4, 3000.0, n=1.0, reff=3.0)]
    images, objects = make_scene(truths, {"r": psf}, {"r": 1.0}, (120, 160), {"r": 1.0}, np.random.default_rng(3))
    objects["parentObjectId"] = [0, 7, 7]
    # A first call pays one-time costs outside any stage (lazy imports, cached profile tables).
    fit_patch(images, (0, 0), objects, None, {"r": mix}, "exp", SourceFitConfig())
    timer = StageTimer()
    t0 = time.process_time()
    table = fit_patch(images, (0, 0), objects, None, {"r": mix}, "exp", SourceFitConfig(), timer=timer)
    total = time.process_time() - t0
    assert len(table) == 3
    cpu = table.meta["galmix_stage_cpu"]
    assert {"plan", "stamps", "engine", "solve", "write"} <= set(cpu)
    assert cpu == timer.cpu
    # ~2 ms per call lie outside the stages (argument checks, the table's assembly); more under load, where
    # a garbage collection may land there too.
    assert sum(cpu.values()) == pytest.approx(total, rel=0.05, abs=1e-2)


def test_quantum_split_covers_the_quantum(ci_repo, ci_detect_collection, caplog):
    label = "fitCoaddMultibandPoint"
    butler = SimplePipelineExecutor.prep_butler(ci_repo, inputs=[ci_detect_collection, "galmix/sim"],
                                                output="galmix/stage_split")
    executor = SimplePipelineExecutor.from_pipeline(
        Pipeline.from_uri(f"resource://lsst.galmix/pipelines/galmix_ci.yaml#fitCoaddPsf,{label}"), butler=butler,
        where="skymap = 'galmix_sim' AND tract = 0 AND patch = 0",
    )
    with caplog.at_level(logging.INFO, logger="lsst"):
        executor.run(register_dataset_types=True)
    reader = Butler.from_config(ci_repo, collections=["galmix/stage_split"])
    (ref,) = reader.registry.queryDatasets(f"{label}_metadata", findFirst=True)
    md = reader.get(ref).to_dict()
    own, quantum = md[label], md["quantum"]

    def first(v):
        return v[0] if isinstance(v, list) else v

    stages = {k.removesuffix("CpuSeconds"): float(first(v)) for k, v in own.items()
              if k.endswith("CpuSeconds") and k != "stageCpuSeconds"}
    assert {"io", "plan", "stamps", "engine", "solve", "write", "task"} <= set(stages)
    assert all(v >= 0 for v in stages.values()) and stages["io"] > 0 and stages["engine"] > 0
    total = float(first(own["stageCpuSeconds"]))
    assert sum(stages.values()) == pytest.approx(total, rel=1e-6)
    # The stages start and end inside runQuantum: they cover the quantum's CPU but for the executor's calls.
    cpu = float(first(quantum["endCpuTime"])) - float(first(quantum["startCpuTime"]))
    assert total <= cpu + 1e-3
    assert total == pytest.approx(cpu, rel=0.05, abs=0.05)
    n = int(first(own["nObjects"]))
    assert n > 0 and float(first(own["objectsPerCpuSecond"])) == pytest.approx(n / total)
    lines = [r.getMessage() for r in caplog.records if r.name.endswith(label) and "CPU by stage" in r.getMessage()]
    assert len(lines) == 1
    assert f"to {n} objects" in lines[0] and "objects per CPU s" in lines[0]
    assert all(f"{s} " in lines[0] for s in ("io", "engine", "stamps", "write"))
    # The StageTimer is the fit task's only timer, and the run report reads it.
    assert not {"fitSeconds", "prepareSeconds", "objectFitSeconds"} & set(own)
    timing = task_timings(reader, "galmix/stage_split")
    fit = timing[label]
    assert fit.n_quanta == 1 and fit.n_objects == n
    assert fit.stages.cpu == pytest.approx(stages)
    wall = stage_seconds(own, "Wall")
    assert fit.work == pytest.approx(sum(v for s, v in wall.items() if s not in OVERHEAD_STAGES))
    assert 0 < fit.work < sum(wall.values())
    assert f"{label} CPU by stage: {fit.stages.summary()}" in format_timings(timing)
    # The PSF fit has the same split: Butler I/O, the fits, the table, the rest.
    psf_refs = list(reader.registry.queryDatasets("fitCoaddPsf_metadata", findFirst=True))
    assert psf_refs
    for psf_ref in psf_refs:
        psf_md = reader.get(psf_ref).to_dict()
        _check_psf_split({k: first(v) for k, v in psf_md["fitCoaddPsf"].items()}, psf_md["quantum"], first)
    assert set(timing["fitCoaddPsf"].stages.cpu) == {"io", "fit", "write", "task"}
    assert timing["fitCoaddPsf"].work > 0
    psf_lines = [r.getMessage() for r in caplog.records
                 if r.name.endswith("fitCoaddPsf") and "CPU by stage" in r.getMessage()]
    assert len(psf_lines) == len(psf_refs)
    assert all(f"{s} " in line for line in psf_lines for s in ("io", "fit", "write", "task"))


def _check_psf_split(own: dict, quantum: dict | None, first) -> None:
    """The stage keys of a fitCoaddPsf quantum (``quantum``: the executor's section, `None` for a direct
    ``run``, which has no Butler I/O)."""
    stages = stage_seconds(own, "Cpu")
    expected = {"fit", "write", "task"} | ({"io"} if quantum is not None else set())
    assert set(stages) == expected
    assert set(stage_seconds(own, "Wall")) == expected
    assert all(v >= 0 for v in stages.values()) and stages["fit"] > 0
    assert sum(stages.values()) == pytest.approx(float(own["stageCpuSeconds"]), rel=1e-6)
    assert int(own["nKernels"]) > 0 and int(own["nFlagged"]) == 0 and "fitSeconds" not in own
    if quantum is not None:
        cpu = float(first(quantum["endCpuTime"])) - float(first(quantum["startCpuTime"]))
        assert float(own["stageCpuSeconds"]) <= cpu + 1e-3


def test_psf_task_run_reports_its_split(ci_repo, caplog):
    # Called directly (no runQuantum): the call is the timed unit, without an io stage.
    from lsst.galmix.tasks import FitCoaddPsfTask

    butler = Butler.from_config(ci_repo, collections=["galmix/sim"])
    ref = next(iter(butler.registry.queryDatasets("deep_coadd_cell", findFirst=True)))
    psf = butler.get(ref.makeComponentRef("psf"))
    task = FitCoaddPsfTask()
    with caplog.at_level(logging.INFO, logger="lsst"):
        table = task.run(psf).psfFits
    own = task.getFullMetadata().to_dict()["fitCoaddPsf"]
    _check_psf_split(own, None, lambda v: v)
    assert int(own["nKernels"]) == len(table)
    lines = [r.getMessage() for r in caplog.records if "CPU by stage" in r.getMessage()]
    assert len(lines) == 1 and f"Fitted {len(table)} PSF kernels" in lines[0]

"""Shared pytest fixtures. Simulation fixtures (prefixed ``ci_``) build the CI repository once per session."""

from __future__ import annotations

import pytest

CI_SEED = 1
CI_DETECT_COLLECTION = "galmix/ci_detect"


@pytest.fixture(scope="session")
def ci_repo_summary(tmp_path_factory):
    """`lsst.galmix.sim.RepoSummary` of a CI-size repository (2x2 patches, ugrizy, seed 1)."""
    from lsst.galmix.sim import make_repo

    return make_repo(str(tmp_path_factory.mktemp("galmix_ci") / "repo"), size="ci", seed=CI_SEED)


@pytest.fixture(scope="session")
def ci_repo(ci_repo_summary) -> str:
    """Path of the session's CI-size simulated repository (RUN ``galmix/sim``)."""
    return ci_repo_summary.root


@pytest.fixture(scope="session")
def ci_detect_collection(ci_repo) -> str:
    """Run ``detectCoaddSources`` on the CI repository once; return its output (chained) collection."""
    from lsst.galmix.tasks.detect_coadd_sources import DetectCoaddSourcesTask
    from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor

    butler = SimplePipelineExecutor.prep_butler(ci_repo, inputs=["galmix/sim"], output=CI_DETECT_COLLECTION)
    executor = SimplePipelineExecutor.from_task_class(DetectCoaddSourcesTask, butler=butler)
    executor.run(register_dataset_types=True)
    return CI_DETECT_COLLECTION


def _engine_isas() -> list[str]:
    """Kernel instruction sets to run the engine tests under: the one GALMIX_ISA names, else all this CPU runs."""
    import os

    from lsst.galmix import _galmix

    forced = os.environ.get("GALMIX_ISA", "auto")
    return _galmix.supported_isas() if forced in ("", "auto") else [forced]


@pytest.fixture(params=_engine_isas())
def engine_isa(request):
    """Run a test under each kernel instruction set (``pytestmark = pytest.mark.usefixtures("engine_isa")``)."""
    from lsst.galmix import _galmix

    previous = _galmix.active_isa()
    _galmix.set_isa(request.param)
    yield request.param
    _galmix.set_isa(previous)

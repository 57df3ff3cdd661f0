"""The shipped YAML pipelines load from the package (resource://) and their parameters take effect."""

from pathlib import Path

import pytest
from lsst.daf.butler import DimensionUniverse
from lsst.galmix.models.definitions import MODELS
from lsst.pipe.base import Pipeline

PIPELINES = Path(__file__).parent.parent / "pipelines"


def _graph(name: str, **params):
    pipeline = Pipeline.from_uri(f"resource://lsst.galmix/pipelines/{name}.yaml")
    for key, value in params.items():
        pipeline.addConfigOverride("parameters", key, value)
    graph = pipeline.to_graph()
    graph.resolve(dimensions=DimensionUniverse())
    return graph


def test_package_data_is_the_repository_directory():
    import importlib.resources

    shipped = importlib.resources.files("lsst.galmix") / "pipelines"
    names = sorted(p.name for p in shipped.iterdir() if p.name.endswith(".yaml"))
    assert names == sorted(p.name for p in PIPELINES.glob("*.yaml"))
    assert {"galmix_fit.yaml", "galmix_fit_all.yaml", "galmix_match_dc2.yaml", "galmix_ci.yaml",
            "galmix_production.yaml"} <= set(names)


@pytest.mark.parametrize(
    "params, output",
    [
        ({}, "galmix_sersic_patch"),
        ({"fix_centroid": True}, "galmix_sersicFixedCen_patch"),
        ({"add_point_source": True}, "galmix_ptsersic_patch"),
        ({"add_point_source": True, "fix_centroid": True}, "galmix_ptsersicFixedCen_patch"),
    ],
)
def test_fit_parameters(params, output):
    graph = _graph("galmix_fit", **params)
    assert set(graph.tasks.keys()) == {"fitCoaddPsf", "fitCoaddMultibandSersic"}
    outputs = {n for n in graph.dataset_types if n.startswith("galmix_") and n.endswith("_patch")}
    assert outputs == {output}
    assert graph.dataset_types["galmix_psf_fits"].dimensions.names >= {"tract", "patch", "band"}


def test_fit_all_has_every_model():
    graph = _graph("galmix_fit_all")
    outputs = {n for n in graph.dataset_types if n.endswith("_patch")}
    assert outputs == {f"galmix_{m}_patch" for m in MODELS if not m.endswith("FixedCen")}
    graph = _graph("galmix_fit_all", fix_centroid=True)
    outputs = {n for n in graph.dataset_types if n.endswith("_patch")}
    assert outputs == {f"galmix_{m}_patch" for m in MODELS if m.endswith("FixedCen")}


def test_match_parameters():
    graph = _graph("galmix_match_dc2", models=["sersic", "exp"], model="exp")
    names = set(graph.dataset_types)
    assert {"galmix_sersic_patch", "galmix_exp_patch", "objectTable_tract_galmix"} <= names
    assert {
        "match_ref_truth_summary_objectTable_tract_galmix",
        "match_target_truth_summary_objectTable_tract_galmix",
        "matched_truth_summary_objectTable_tract_galmix",
        "galmix_exp_matchedMetrics",
        "galmix_exp_matchedRefMagDiff_r_Plot",
    } <= names
    assert graph.dataset_types["galmix_exp_matchedRefMagDiff_r_Plot"].storage_class_name == "Plot"
    assert graph.dataset_types["galmix_exp_matchedMetrics"].storage_class_name == "StructuredDataDict"


@pytest.mark.parametrize(
    "name, task",
    [
        ("fitCoaddMultiband_fast.py", "FitCoaddMultibandTask"),
        ("fitCoaddPsf_perObject.py", "FitCoaddPsfTask"),
        ("analyzeMatched_bright.py", "AnalyzeMatchedTask"),
    ],
)
def test_config_files_load(name, task):
    from lsst.galmix import tasks

    config = getattr(tasks, task).ConfigClass()
    before = config.toDict()
    config.load(str(PIPELINES.parent / "config" / name))
    config.validate()
    assert config.toDict() != before


def test_psf_object_mode_reads_objects():
    from lsst.galmix.tasks import FitCoaddPsfConfig, FitCoaddPsfConnections

    config = FitCoaddPsfConfig()
    assert "objects" not in FitCoaddPsfConnections(config=config).inputs
    config.mode = "object"
    assert "objects" in FitCoaddPsfConnections(config=config).inputs


@pytest.mark.parametrize(
    "params, objects, footprints",
    [({}, "object_patch", False), ({"input_catalog": "galmix"}, "galmix_objects", True),
     ({"upstream_catalog": "objectTable"}, "objectTable", False)],
)
def test_production_pipeline(params, objects, footprints):
    graph = _graph("galmix_production", **params)
    assert set(graph.tasks.keys()) == {"fitCoaddPsf", "fitCoaddMultibandSersic", "consolidateTract"}
    names = set(graph.dataset_types)
    assert {"galmix_psf_fits", "galmix_sersic_patch", "objectTable_tract_galmix", objects} <= names
    assert not any(n.startswith(("truth", "match")) for n in names)
    assert ("galmix_footprints" in names) == footprints
    inputs = {edge.parent_dataset_type_name for edge in graph.tasks["fitCoaddMultibandSersic"].inputs.values()}
    assert objects in inputs

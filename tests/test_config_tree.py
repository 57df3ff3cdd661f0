"""One config tree: the tasks embed the library's Config classes, with the library's defaults.

Every library setting (stamps, sky, blends, residual sources, PSF fits, optimizer, priors, detection,
metrics) is a field of a `lsst.pex.config.Config` class of the library, documented there with one
default; the PipelineTasks hold those classes as `ConfigField`, so a pipeline YAML, ``-c`` or ``-C``
reaches every setting.
"""

import importlib
import pkgutil
import re

import lsst.pex.config as pexConfig
import pytest
from lsst.galmix import tasks
from lsst.galmix.analysis.metrics import MatchedSpec
from lsst.galmix.detection.detect import DetectionConfig
from lsst.galmix.fitting.config import FitSettings, Priors, PsfFitConfig, SourceFitConfig
from lsst.galmix.tasks.detect_coadd_sources import DetectCoaddSourcesConfig
from lsst.pipe.base import Pipeline, PipelineTaskConfig

EMBEDDED = {
    tasks.FitCoaddMultibandConfig: {"fit": SourceFitConfig},
    tasks.FitCoaddPsfConfig: {"psf": PsfFitConfig},
    DetectCoaddSourcesConfig: {"detection": DetectionConfig},
    tasks.AnalyzeMatchedConfig: {"analysis": MatchedSpec},
}
LIBRARY = [SourceFitConfig, FitSettings, Priors, PsfFitConfig, DetectionConfig, MatchedSpec]
TASK_CONFIGS = sorted(
    {obj for info in pkgutil.iter_modules(tasks.__path__)
     for obj in vars(importlib.import_module(f"{tasks.__name__}.{info.name}")).values()
     if isinstance(obj, type) and issubclass(obj, PipelineTaskConfig) and obj is not PipelineTaskConfig},
    key=lambda cls: cls.__name__,
)


def _is_library(dtype: type) -> bool:
    return dtype.__module__.startswith("lsst.galmix.") and not dtype.__module__.startswith("lsst.galmix.tasks")


def _leaves(cls: type[pexConfig.Config], prefix: str = "") -> dict[str, pexConfig.Field]:
    """Every leaf field of a Config class by dotted path."""
    out = {}
    for name, field in cls._fields.items():
        if isinstance(field, pexConfig.ConfigField):
            out |= _leaves(field.dtype, f"{prefix}{name}.")
        else:
            out[prefix + name] = field
    return out


def _key(name: str) -> str:
    """Spelling-independent name: ``stampSigmas``, ``stamp_sigmas`` and ``stamp.sigmas`` are one key."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def test_task_configs_are_all_checked():
    # A new task embedding a library Config must be listed here.
    embedding = {cls for cls in TASK_CONFIGS
                 if any(isinstance(f, pexConfig.ConfigField) and _is_library(f.dtype) for f in cls._fields.values())}
    assert embedding == set(EMBEDDED)


@pytest.mark.parametrize("task_config", list(EMBEDDED), ids=lambda c: c.__name__)
def test_task_defaults_are_the_library_defaults(task_config):
    config = task_config()
    for name, library in EMBEDDED[task_config].items():
        embedded = getattr(config, name)
        assert type(embedded) is library
        fresh = library()
        assert embedded.toDict() == fresh.toDict()
        for path in _leaves(library):
            a, b = embedded, fresh
            for part in path.split("."):
                a, b = getattr(a, part), getattr(b, part)
            assert a == b, f"{task_config.__name__}.{name}.{path}: task {a!r} != library {b!r}"


@pytest.mark.parametrize("task_config", TASK_CONFIGS, ids=lambda c: c.__name__)
def test_no_task_field_duplicates_a_library_setting(task_config):
    own = {name for name in task_config._fields if name not in PipelineTaskConfig._fields}
    library_keys = set()
    for name, library in EMBEDDED.get(task_config, {}).items():
        own.discard(name)
        for path in _leaves(library):
            library_keys |= {_key(path), _key(path.split(".")[-1])}
    # Settings of the fitting library belong to it whichever task would carry them (the pixel scale is
    # measured by fitCoaddMultiband; matchTruth.pixelScale is its fallback for tables without positions).
    for library in (SourceFitConfig, PsfFitConfig, DetectionConfig):
        library_keys |= {_key(path) for path in _leaves(library) if path != "pixel_scale"}
    duplicated = {name for name in own if _key(name) in library_keys}
    assert not duplicated, f"{task_config.__name__} repeats library settings {sorted(duplicated)}"


@pytest.mark.parametrize("library", LIBRARY, ids=lambda c: c.__name__)
def test_every_library_setting_is_documented(library):
    for path, field in _leaves(library).items():
        assert len(field.doc) > 10, f"{library.__name__}.{path} has no documentation"
    # The defaults validate.
    library().validate()


def test_library_settings_reach_a_pipeline():
    """Settings the task did not expose before, and a packaged ``-C`` file, reach the task's config."""
    pipeline = Pipeline.from_uri("resource://lsst.galmix/pipelines/galmix_fit.yaml")
    label = "fitCoaddMultibandSersic"
    pipeline.addConfigFile(label, "resource://lsst.galmix/config/fitCoaddMultiband_fast.py")
    pipeline.addConfigOverride(label, "fit.footprint_only", True)
    pipeline.addConfigOverride(label, "fit.subtract_iterations", 3)
    pipeline.addConfigOverride(label, "fit.settings.xtol", 1e-5)
    pipeline.addConfigOverride(label, "fit.settings.priors.n", [1.5, 1.0])
    pipeline.addConfigOverride("fitCoaddPsf", "psf.n_gauss", 3)
    graph = pipeline.to_graph()
    fit = graph.tasks[label].config.fit
    assert fit.footprint_only and fit.subtract_iterations == 3
    assert fit.settings.xtol == 1e-5 and list(fit.settings.priors.n) == [1.5, 1.0]
    # From config/fitCoaddMultiband_fast.py.
    assert (fit.blend_mode, fit.settings.max_iter, fit.stamp_max, fit.n_threads) == ("subtract", 40, 40, 2)
    assert graph.tasks["fitCoaddPsf"].config.psf.n_gauss == 3
    # The saved config carries each setting's documentation.
    text = graph.tasks[label].config.saveToString()
    assert SourceFitConfig.footprint_only.doc.split(",")[0] in text
    assert "fit.settings.xtol=1e-05" in text.replace(" ", "")

"""analyzeMatched: metrics (StructuredDataDict) and PNG plots of a matched table for one model."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.pipe.base import connectionTypes as cT

from ..analysis.metrics import MatchedSpec, compute_metrics, make_plots, plot_names
from ..connections import (
    MATCH_TEMPLATES,
    MATCHED,
    MODEL_TEMPLATE_DEFAULT,
    TRACT_DIMENSIONS,
    apply_model_template,
    table,
)
from ..models.definitions import get_model

__all__ = ["AnalyzeMatchedConfig", "AnalyzeMatchedConnections", "AnalyzeMatchedTask"]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the duration of a block (restored on exit).

    matplotlib allocates hundreds of thousands of objects per set of plots, which triggers collections
    that walk every live object of the process (in ``pipetask run -j 1``: the quantum graph, the Butler
    and all earlier tasks' objects); the plots' reference cycles are freed by the next collection after
    the block instead. Measured on the CI repository: 0.2-0.35 s CPU of 3.7 s per quantum in a small
    process.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class AnalyzeMatchedConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=TRACT_DIMENSIONS,
    defaultTemplates={**MATCH_TEMPLATES, "model": MODEL_TEMPLATE_DEFAULT},
):
    """Plot outputs ``plot_<name>`` -> ``galmix_<model>_<name>_Plot`` are added in ``__init__``."""

    matched = table(cT.Input, "Matched table", MATCHED)
    metrics = cT.Output(
        doc="Binned and summary statistics of the matched table",
        name="galmix_{model}_matchedMetrics",
        storageClass="StructuredDataDict",
        dimensions=TRACT_DIMENSIONS,
    )

    def __init__(self, *, config: AnalyzeMatchedConfig):
        for name in plot_names(config.analysis.bands, has_size=get_model(config.analysis.model).has_shape):
            setattr(
                self,
                f"plot_{name}",
                cT.Output(
                    doc=f"Plot {name}",
                    name=f"galmix_{{model}}_{name}_Plot",
                    storageClass="Plot",
                    dimensions=TRACT_DIMENSIONS,
                ),
            )
        apply_model_template(self, config.analysis.model)


class AnalyzeMatchedConfig(pipeBase.PipelineTaskConfig, pipelineConnections=AnalyzeMatchedConnections):
    """Configuration of `AnalyzeMatchedTask`."""

    analysis = pexConfig.ConfigField[MatchedSpec](
        doc="What the metrics and plots measure (model, bands, magnitude bins, summary range, selection band)",
        dtype=MatchedSpec,
    )


class AnalyzeMatchedTask(pipeBase.PipelineTask):
    """Compute metrics and plots (see `lsst.galmix.analysis.metrics`)."""

    ConfigClass = AnalyzeMatchedConfig
    _DefaultName = "analyzeMatched"
    config: AnalyzeMatchedConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        with _gc_paused():  # making and writing the plots (the PNGs are drawn by ``put``)
            outputs = self.run(butlerQC.get(inputRefs.matched))
            butlerQC.put(outputs.metrics, outputRefs.metrics)
            made = list(outputs.plots)
            for name in made:
                fig = outputs.plots.pop(name)
                ref = getattr(outputRefs, f"plot_{name}", None)
                if ref is not None:
                    butlerQC.put(fig, ref)
                del fig
            # No reference to a figure is left when the collector resumes: its next collection frees
            # them in one pass, instead of scanning them live (and again in the older generations).
            del outputs
        missing = [n for n in plot_names(self.config.analysis.bands) if n not in made]
        if missing:
            self.log.warning("No data for plots %s (columns absent)", missing)

    def run(self, matched: Table) -> pipeBase.Struct:
        """Analyse a matched table.

        Parameters
        ----------
        matched : `astropy.table.Table`
            Matched table.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``metrics`` (`dict`) and ``plots`` (`dict` of name -> `matplotlib.figure.Figure`).
        """
        spec = self.config.analysis
        metrics = compute_metrics(matched, spec)
        plots = make_plots(matched, spec)
        for label in ("galaxies", "stars"):
            for band, s in metrics["summary"].get(label, {}).get("magDiff", {}).items():
                self.log.info(
                    "%s %s %s %.0f-%.0f mag: N=%d median dmag=%s sigma_MAD=%s", spec.model, label, band,
                    spec.summary_min, spec.summary_max, s["count"], s["median"], s["sigma_mad"],
                )
        return pipeBase.Struct(metrics=metrics, plots=plots)

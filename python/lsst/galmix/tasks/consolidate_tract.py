"""consolidateTract: all patch tables of the configured models -> ``objectTable_tract_galmix``."""

from __future__ import annotations

import numpy as np
from astropy.table import Column, Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.pipe.base import connectionTypes as cT

from ..analysis.catalogs import add_identity_columns, consolidate_models, resolve_duplicates
from ..connections import PATCH_DIMENSIONS, TRACT_DIMENSIONS, table
from ..data.tables import put_outputs
from ..schema import param_column

__all__ = ["ConsolidateTractConfig", "ConsolidateTractConnections", "ConsolidateTractTask"]


class ConsolidateTractConnections(pipeBase.PipelineTaskConnections, dimensions=TRACT_DIMENSIONS):
    """One input connection per configured model is added in ``__init__`` (``inputTable_<model>``)."""

    objectTable = table(cT.Output, "Per-tract table of all objects and all models, with patch and isPrimary",
                        "objectTable_tract_galmix")

    def __init__(self, *, config: ConsolidateTractConfig):
        for model in config.models:
            setattr(self, f"inputTable_{model}", table(cT.Input, f"Per-patch fit table of model {model}",
                                                       config.inputTemplate.format(model=model), PATCH_DIMENSIONS,
                                                       multiple=True))


class ConsolidateTractConfig(pipeBase.PipelineTaskConfig, pipelineConnections=ConsolidateTractConnections):
    """Configuration of `ConsolidateTractTask`."""

    models = pexConfig.ListField[str](
        doc="Models to consolidate; the first one's coordinates find duplicates", default=["sersic"]
    )
    inputTemplate = pexConfig.Field[str](
        doc="Dataset type name of a model's patch table", default="galmix_{model}_patch"
    )
    duplicateRadius = pexConfig.Field[float](
        doc="Primary objects of different patches closer than this (arcsec) are one object", default=0.5
    )

    def validate(self):
        super().validate()
        if not self.models:
            raise pexConfig.FieldValidationError(ConsolidateTractConfig.models, self, "No model given")
        if len(set(self.models)) != len(self.models):
            raise pexConfig.FieldValidationError(ConsolidateTractConfig.models, self, "Repeated model")


class ConsolidateTractTask(pipeBase.PipelineTask):
    """Stack each model's patch tables, join the models on ``objectId`` and resolve duplicates.

    The table starts with Rubin's identity columns (``objectId``, ``coord_ra``, ``coord_dec``, ``tract``,
    ``patch``, ``refBand``, ``refExtendedness``; `lsst.galmix.analysis.catalogs.add_identity_columns`);
    ``{band}_psfFlux`` comes from the point-source model when ``point`` is among ``models``.

    The ``isPrimary`` column is ``detect_isPrimary`` with duplicates across patch overlaps removed
    (see `lsst.galmix.analysis.catalogs.resolve_duplicates`).
    """

    ConfigClass = ConsolidateTractConfig
    _DefaultName = "consolidateTract"
    config: ConsolidateTractConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        per_model: dict[str, list[Table]] = {}
        for model in self.config.models:
            tables = []
            for ref in sorted(getattr(inputRefs, f"inputTable_{model}"), key=lambda r: r.dataId["patch"]):
                table = butlerQC.get(ref)
                patch = int(ref.dataId["patch"])
                if "patch" not in table.colnames:
                    table["patch"] = np.full(len(table), patch, dtype=np.int32)
                elif len(table) and not np.all(np.asarray(table["patch"]) == patch):
                    raise pipeBase.InvalidQuantumError(f"{ref}: 'patch' column disagrees with the data ID")
                tables.append(table)
            per_model[model] = tables
        outputs = self.run(per_model, tract=int(butlerQC.quantum.dataId["tract"]))
        put_outputs(butlerQC, outputs, outputRefs)

    def run(self, per_model: dict[str, list[Table]], tract: int = 0) -> pipeBase.Struct:
        """Consolidate patch tables.

        Parameters
        ----------
        per_model : `dict` [`str`, `list` [`astropy.table.Table`]]
            Model -> its patch tables.
        tract : `int`
            Tract ID (the ``tract`` column).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``objectTable``: the tract table.
        """
        table = consolidate_models(per_model)
        first = self.config.models[0]
        primary = resolve_duplicates(
            table, param_column(first, "ra"), param_column(first, "dec"), self.config.duplicateRadius,
            param_column(first, "n_pix"),
        )
        table["isPrimary"] = Column(primary)
        table = add_identity_columns(table, list(self.config.models), tract)
        table.meta["galmix_models"] = list(self.config.models)
        n_dup = int(np.sum(np.asarray(table["detect_isPrimary"], bool) & ~primary))
        self.log.info(
            "Consolidated %d objects (%d primary, %d duplicates resolved) of models %s from %d patches",
            len(table), int(primary.sum()), n_dup, list(self.config.models),
            len(next(iter(per_model.values()))),
        )
        return pipeBase.Struct(objectTable=table)

"""diffMatched: join the reference catalogue and the object table through the match tables."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

import lsst.pipe.base as pipeBase
from lsst.pipe.base import connectionTypes as cT

from ..analysis.catalogs import build_matched_table

__all__ = ["DiffMatchedConfig", "DiffMatchedConnections", "DiffMatchedTask"]


class DiffMatchedConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=("skymap", "tract"),
    defaultTemplates={"refName": "truth_summary", "targetName": "objectTable_tract_galmix"},
):
    reference = cT.Input(
        doc="Reference catalogue", name="{refName}", storageClass="ArrowAstropy", dimensions=("skymap", "tract")
    )
    target = cT.Input(
        doc="Measured object table",
        name="{targetName}",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract"),
    )
    matchRef = cT.Input(
        doc="Reference-side match table",
        name="match_ref_{refName}_{targetName}",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract"),
    )
    matchTarget = cT.Input(
        doc="Object-side match table",
        name="match_target_{refName}_{targetName}",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract"),
    )
    matched = cT.Output(
        doc="Matched pairs plus unmatched candidates: object columns, refcat_ columns, match distance",
        name="matched_{refName}_{targetName}",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract"),
    )


class DiffMatchedConfig(pipeBase.PipelineTaskConfig, pipelineConnections=DiffMatchedConnections):
    """Configuration of `DiffMatchedTask` (nothing to configure beyond connections)."""


class DiffMatchedTask(pipeBase.PipelineTask):
    """Write the matched table (see `lsst.galmix.analysis.catalogs.build_matched_table`)."""

    ConfigClass = DiffMatchedConfig
    _DefaultName = "diffMatched"

    def run(self, reference: Table, target: Table, matchRef: Table, matchTarget: Table) -> pipeBase.Struct:
        """Build the matched table.

        Parameters
        ----------
        reference, target : `astropy.table.Table`
            Reference catalogue and object table.
        matchRef, matchTarget : `astropy.table.Table`
            Match tables from `MatchTruthTask`.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``matched``: the matched table.
        """
        matched = build_matched_table(reference, target, matchRef, matchTarget)
        n_pair = int(np.sum(matched["match_hasRef"] & matched["match_hasObject"]))
        self.log.info("Matched table: %d rows, %d pairs", len(matched), n_pair)
        return pipeBase.Struct(matched=matched)

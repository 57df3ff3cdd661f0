"""diffMatched: join the reference catalogue and the object table through the match tables."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

import lsst.pipe.base as pipeBase
from lsst.pipe.base import connectionTypes as cT

from ..analysis.catalogs import build_matched_table
from ..connections import MATCH_REF, MATCH_TARGET, MATCHED, MatchedConnections, table
from ..data.tables import put_outputs

__all__ = ["DiffMatchedConfig", "DiffMatchedConnections", "DiffMatchedTask"]


class DiffMatchedConnections(MatchedConnections):
    matchRef = table(cT.Input, "Reference-side match table", MATCH_REF)
    matchTarget = table(cT.Input, "Object-side match table", MATCH_TARGET)
    matched = table(cT.Output, "Matched pairs plus unmatched candidates: object columns, refcat_ columns, match "
                    "distance", MATCHED)


class DiffMatchedConfig(pipeBase.PipelineTaskConfig, pipelineConnections=DiffMatchedConnections):
    """Configuration of `DiffMatchedTask` (nothing to configure beyond connections)."""


class DiffMatchedTask(pipeBase.PipelineTask):
    """Write the matched table (see `lsst.galmix.analysis.catalogs.build_matched_table`)."""

    ConfigClass = DiffMatchedConfig
    _DefaultName = "diffMatched"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        put_outputs(butlerQC, self.run(**butlerQC.get(inputRefs)), outputRefs)

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

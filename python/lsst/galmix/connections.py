"""Connections shared by the PipelineTasks of `lsst.galmix.tasks`: the dataset types that one task writes
and others read, each declared once, and the resolution of the ``{model}`` connection template.

A dataset type's storage class and dimensions are fixed here (`table`, `coadds`, `objects`,
`footprints`, `psf_fits`, `MatchedConnections` and the match table names); a task only gives the
connection kind and its doc.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lsst.pipe.base import PipelineTaskConnections
from lsst.pipe.base import connectionTypes as cT

__all__ = [
    "MATCHED",
    "MATCH_REF",
    "MATCH_TARGET",
    "MATCH_TEMPLATES",
    "MODEL_TEMPLATE_DEFAULT",
    "PATCH_BAND_DIMENSIONS",
    "PATCH_DIMENSIONS",
    "TRACT_DIMENSIONS",
    "MatchedConnections",
    "apply_model_template",
    "coadds",
    "footprints",
    "objects",
    "psf_fits",
    "table",
]

TRACT_DIMENSIONS = ("skymap", "tract")
PATCH_DIMENSIONS = ("skymap", "tract", "patch")
PATCH_BAND_DIMENSIONS = ("skymap", "tract", "patch", "band")

MODEL_TEMPLATE_DEFAULT = "{model}"
"""Default of the ``model`` connection template: keep the placeholder, filled from the config.

With this default the class-level template formatting leaves ``{model}`` in the names and
`apply_model_template` fills it with the model name the config resolves (so boolean options such as
``fixCentroid`` change the dataset type names). Setting ``connections.model`` explicitly overrides it.
"""


def table[C: (cT.Input, cT.Output)](kind: type[C], doc: str, name: str,
                                   dimensions: tuple[str, ...] = TRACT_DIMENSIONS, **kwargs: Any) -> C:
    """A connection to an ``ArrowAstropy`` table (per tract unless ``dimensions`` say otherwise).

    Parameters
    ----------
    kind : `type`
        ``connectionTypes.Input`` or ``connectionTypes.Output``.
    doc, name : `str`
        Connection doc and dataset type name (templates allowed).
    dimensions : `tuple` [`str`, ...]
        Dimensions of the dataset type.
    **kwargs
        Further connection arguments (``multiple``, ``deferLoad``...).
    """
    return kind(doc=doc, name=name, storageClass="ArrowAstropy", dimensions=dimensions, **kwargs)


def coadds(doc: str) -> cT.Input:
    """All bands' cell coadds of a patch (``{coaddName}``), read band by band through deferred handles."""
    return cT.Input(doc=doc, name="{coaddName}", storageClass="CellCoadd", dimensions=PATCH_BAND_DIMENSIONS,
                    multiple=True, deferLoad=True)


def objects[C: (cT.Input, cT.Output)](kind: type[C], doc: str) -> C:
    """``galmix_objects``: the detected (deblended) objects of a patch."""
    return table(kind, doc, "galmix_objects", PATCH_DIMENSIONS)


def footprints[C: (cT.Input, cT.Output)](kind: type[C], doc: str) -> C:
    """``galmix_footprints``: the int32 label image of a patch (which object owns each pixel)."""
    return kind(doc=doc, name="galmix_footprints", storageClass="NumpyArray", dimensions=PATCH_DIMENSIONS)


def psf_fits[C: (cT.Input, cT.Output)](kind: type[C], doc: str, **kwargs: Any) -> C:
    """``galmix_psf_fits``: the PSF mixtures of one band of a patch."""
    return table(kind, doc, "galmix_psf_fits", PATCH_BAND_DIMENSIONS, **kwargs)


MATCH_TEMPLATES = {"refName": "truth_summary", "targetName": "objectTable_tract_galmix"}
"""Default templates of the matching tasks: the reference catalogue and the tract object table."""

MATCH_REF = "match_ref_{refName}_{targetName}"
"""Match table row-aligned with the reference catalogue (written by matchTruth)."""

MATCH_TARGET = "match_target_{refName}_{targetName}"
"""Match table row-aligned with the object table (written by matchTruth)."""

MATCHED = "matched_{refName}_{targetName}"
"""Matched table: object and reference columns side by side (written by diffMatched)."""


class MatchedConnections(PipelineTaskConnections, dimensions=TRACT_DIMENSIONS, defaultTemplates=MATCH_TEMPLATES):
    """Base of the connections of the tasks that read a reference catalogue and the tract object table."""

    reference = table(cT.Input, "Reference catalogue (DC2-like truth_summary)", "{refName}")
    target = table(cT.Input, "Measured object table", "{targetName}")


def apply_model_template(connections: PipelineTaskConnections, model_name: str) -> None:
    """Fill a remaining ``{model}`` placeholder in every connection's dataset type name.

    Parameters
    ----------
    connections : `lsst.pipe.base.PipelineTaskConnections`
        Connections being constructed (call from their ``__init__``).
    model_name : `str`
        Model name resolved from the config.
    """
    for attr, conn in list(connections.allConnections.items()):
        if "{model}" in conn.name:
            setattr(connections, attr, dataclasses.replace(conn, name=conn.name.format(model=model_name)))

"""Resolution of the ``{model}`` connection template from a task's model configuration.

Shared by the PipelineTasks of `lsst.galmix.tasks` (their connections call `apply_model_template`).
"""

from __future__ import annotations

import dataclasses

from lsst.pipe.base import PipelineTaskConnections

__all__ = ["MODEL_TEMPLATE_DEFAULT", "apply_model_template"]

MODEL_TEMPLATE_DEFAULT = "{model}"
"""Default of the ``model`` connection template: keep the placeholder, filled from the config.

With this default the class-level template formatting leaves ``{model}`` in the names and
`apply_model_template` fills it with the model name the config resolves (so boolean options such as
``fixCentroid`` change the dataset type names). Setting ``connections.model`` explicitly overrides it.
"""


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

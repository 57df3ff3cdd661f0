"""Names, units and descriptions of every column galmix writes, and the one registry of failure flags.

`lsst.galmix.schema.columns` builds every column name (flux, parameter, flag, sky, PSF-mixture,
detection and reference columns) and the table schemas; `lsst.galmix.schema.flags` declares the failure
modes of detection, PSF fits and source fits. The package sits between ``models`` (which it reads for
model and component names) and the layers that write tables (``detection``, ``fitting``, ``analysis``,
``tasks``), so all of them may import it.
"""

from . import columns, flags

# The package's public names are its two modules' public names.
from .columns import *
from .flags import *

__all__ = columns.__all__ + flags.__all__

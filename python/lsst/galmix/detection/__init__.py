"""galmix detection: detection and deblending of coadds when no upstream catalogue exists.

The ``galmix_objects`` columns are declared in `lsst.galmix.schema` (`~lsst.galmix.schema.object_columns`).
"""

from .coadds import *
from .detect import *

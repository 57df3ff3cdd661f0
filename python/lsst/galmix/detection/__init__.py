"""galmix detection: detection and deblending of coadds when no upstream catalogue exists."""

from .coadds import *
from .detect import *
from .schema import *

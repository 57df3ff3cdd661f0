"""galmix sim: ci_imsim-style simulated repository (GalSim): truth, coadds, PSFs."""

from .make_repo import *

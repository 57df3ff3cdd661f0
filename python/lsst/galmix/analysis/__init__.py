"""Matching, binned statistics and plots for measured-versus-reference catalogues.

Only numpy, scipy, astropy and matplotlib: nothing here depends on the Butler or the fitter.
"""

from .catalogs import *
from .matching import *
from .metrics import *
from .plots import *
from .stats import *

"""galmix PipelineTasks: thin translators between the Butler and the galmix library."""

from .analyze_matched import *
from .consolidate_tract import *
from .diff_matched import *
from .fit_coadd_multiband import *
from .fit_coadd_psf import *
from .match_truth import *

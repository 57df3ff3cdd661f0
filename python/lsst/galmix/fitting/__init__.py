"""galmix fitting: PSF mixtures, source and blend fits on numpy arrays.

The entry points used by the PipelineTasks are re-exported here; see doc/fitting.rst. Column names and
flags are `lsst.galmix.schema`'s.
"""

from .config import FitSettings, Priors, PsfFitConfig, SourceFitConfig
from .patch import fit_patch
from .profile import reff_profile_errors
from .psf import PsfFit, fit_psf_image, fit_psf_images_table, psf_at
from .rebuild import model_image

__all__ = [
    "FitSettings",
    "Priors",
    "PsfFit",
    "PsfFitConfig",
    "SourceFitConfig",
    "fit_patch",
    "fit_psf_image",
    "fit_psf_images_table",
    "model_image",
    "psf_at",
    "reff_profile_errors",
]

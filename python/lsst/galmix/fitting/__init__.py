"""galmix fitting: PSF mixtures, source and blend fits on numpy arrays, output schema and flags.

The entry points used by the PipelineTasks are re-exported here; see doc/fitting.rst.
"""

from .config import FitSettings, Priors, PsfFitConfig, SourceFitConfig
from .flags import FLAGS, PSF_FLAGS, FlagDef, FlagSet
from .patch import fit_patch
from .profile import reff_profile_errors
from .psf import PsfFit, fit_psf_image, fit_psf_images_table, psf_at
from .rebuild import model_image
from .schema import ColumnDef, empty_psf_table, empty_source_table, flux_column, psf_columns, source_columns

__all__ = [
    "FLAGS",
    "PSF_FLAGS",
    "ColumnDef",
    "FitSettings",
    "FlagDef",
    "FlagSet",
    "Priors",
    "PsfFit",
    "PsfFitConfig",
    "SourceFitConfig",
    "empty_psf_table",
    "empty_source_table",
    "fit_patch",
    "fit_psf_image",
    "fit_psf_images_table",
    "flux_column",
    "model_image",
    "psf_at",
    "psf_columns",
    "reff_profile_errors",
    "source_columns",
]

"""Asymmetric errors of ``reff`` from the profile likelihood (opt-in; doc/fitting.rst, error calibration).

With the Sersic index free and S/N below ~40 the likelihood in ``(n, ln reff)`` is banana-shaped and the
Fisher error of ``reff`` at the best fit is not a calibrated 1-sigma error. Here ``ln reff`` is held at
``ln reff_hat -+ d`` (``d`` = its Fisher error) while every other parameter (index, shape, centroid,
fluxes) is re-fitted; the half-width on each side is ``d / sqrt(chi2(ln reff_hat -+ d) - chi2_hat)``, the
quadratic (delta chi2 = 1) interpolation of the profile. Cost: two extra fits per object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
from astropy.table import Table

from ..models.definitions import ModelDef, get_model
from ..schema import error_column, param_column, summary_flag_column
from .config import SourceFitConfig
from .patch import ImageTriple, fit_patch
from .psf import PsfSpec

__all__ = ["LN_REFF_HOLD_SIGMA", "reff_profile_errors"]

LN_REFF_HOLD_SIGMA = 1e-4
"""Sigma of the Gaussian prior that holds ``ln reff`` during a profile re-fit (a hard constraint in practice:
1e-4 is ~1e-3 of the Fisher error at S/N 100)."""


def _chi2(table: Table, name: str, i: int) -> float:
    """Chi-square of a row from its reduced chi-square and pixel count."""
    return float(table[param_column(name, "chisq_reduced")][i]) * float(table[param_column(name, "n_pix")][i])


def reff_profile_errors(
    images: Mapping[str, ImageTriple | None],
    origin: tuple[int, int],
    objects: Table,
    psfs: Mapping[str, PsfSpec | None],
    model: str | ModelDef,
    fitted: Table,
    config: SourceFitConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper profile-likelihood errors of ``reff`` (arcsec) for isolated objects.

    Parameters
    ----------
    images, origin, objects, psfs, model, config
        As given to `lsst.galmix.fitting.patch.fit_patch` (without footprints: each object is re-fitted
        alone, so use this for isolated objects only).
    fitted : `astropy.table.Table`
        The output of `fit_patch` for these objects (same order).

    Returns
    -------
    err_lo, err_hi : `numpy.ndarray`
        Errors of ``reff`` (arcsec, same units as ``{model}_reffErr``) towards smaller and larger sizes:
        the 1-sigma interval is ``[reff - err_lo, reff + err_hi]``. NaN for flagged rows or rows without a
        finite error; a side whose re-fit does not raise the chi-square is NaN too.
    """
    cfg = config or SourceFitConfig()
    name = (get_model(model) if isinstance(model, str) else model).name
    n = len(objects)
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        reff_col = param_column(name, "reff")
        reff, err = fitted[reff_col][i], fitted[error_column(reff_col)][i]
        if fitted[summary_flag_column(name)][i] or not (np.isfinite(err) and err > 0 and reff > 0):
            continue
        d = float(err / reff)
        ln_r = float(np.log(fitted[param_column(name, "reffPix")][i]))
        chi2 = _chi2(fitted, name, i)
        for sign, out in ((-1.0, lo), (1.0, hi)):
            held = cast(SourceFitConfig, cfg.copy())
            held.settings.priors.ln_reff = [ln_r + sign * d, LN_REFF_HOLD_SIGMA]
            row = fit_patch(images, origin, objects[i : i + 1], None, psfs, model, held)
            dchi2 = _chi2(row, name, 0) - chi2
            if not row[summary_flag_column(name)][0] and dchi2 > 0:
                # Half-width in ln reff, converted to arcsec on its own side of the best fit.
                w = d / np.sqrt(dchi2)
                out[i] = reff * (1.0 - np.exp(-w)) if sign < 0 else reff * (np.exp(w) - 1.0)
    return lo, hi

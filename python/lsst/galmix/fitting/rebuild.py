"""Model images rebuilt from a ``galmix_<Model>_patch`` table (for residuals and inspection), drawn by the
C++ scene (`lsst.galmix.fitting.engine_backend.render_sources`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.table import Table

from ..models.definitions import ModelDef, get_model
from ..models.ellipse import eta_from_q_pa
from ..schema import flux_column, param_column, summary_flag_column
from .engine_backend import render_sources
from .optimize import SourceSpec
from .psf import PsfSpec, psf_at

__all__ = ["model_image", "theta_from_row"]


def theta_from_row(model: ModelDef, row) -> np.ndarray:
    """Nonlinear parameters (fitter layout, natural units) of one output row."""
    theta: list[float] = [float(row[param_column(model, "x")]), float(row[param_column(model, "y")])] \
        if model.free_centroid else []
    for comp in model.components:
        if not comp.has_shape:
            continue
        # The table's float32 q underflows to 0 for extreme (unconstrained) ellipticities: read it as 1e-12.
        q = np.clip(float(row[param_column(model, "q", comp)]), 1e-12, 1.0)
        e1, e2 = eta_from_q_pa(q, np.radians(float(row[param_column(model, "pa", comp)])), check=False)
        theta += [np.log(float(row[param_column(model, "reffPix", comp)])), float(e1), float(e2)]
        if comp.free_n:
            theta.append(float(row[param_column(model, "index", comp)]))
    return np.array(theta)


def model_image(
    table: Table,
    model: str | ModelDef,
    band: str,
    psf: PsfSpec,
    shape: tuple[int, int],
    origin: tuple[int, int] = (0, 0),
    rows: Sequence[int] | None = None,
) -> np.ndarray:
    """Sum of the fitted models of a band over an image.

    Parameters
    ----------
    table : `astropy.table.Table`
        Output of `lsst.galmix.fitting.patch.fit_patch`.
    model : `str` or `ModelDef`
        Its model.
    band : `str`
        Band.
    psf : PSF spec
        As for ``fit_patch`` (mixture, ``galmix_psf_fits`` table or callable).
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)`` of the image.
    origin : `tuple` [`int`, `int`]
        Absolute ``(x, y)`` of pixel ``[0, 0]``.
    rows : sequence of `int`, optional
        Rows to include (default: all rows without the summary flag and with finite fluxes).

    Returns
    -------
    image : `numpy.ndarray`
        The model image (nJy per pixel).
    """
    m = get_model(model) if isinstance(model, str) else model
    image = np.zeros(shape)
    if rows is None:
        rows = [i for i in range(len(table)) if not table[summary_flag_column(m)][i]]
    for i in rows:
        row = table[i]
        fluxes = np.array([row[flux_column(m, band, c)] for c in m.components], dtype=float)
        theta = theta_from_row(m, row)
        if not (np.isfinite(fluxes).all() and np.isfinite(theta).all()):
            continue
        x, y = float(row[param_column(m, "x")]), float(row[param_column(m, "y")])
        mix = psf_at(psf, x, y)
        if mix is None:
            continue
        image += render_sources([SourceSpec(m, (x, y))], theta, fluxes, mix, shape, origin)
    return image

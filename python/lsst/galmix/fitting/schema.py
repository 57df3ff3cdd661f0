"""Output table schemas, derived from the model registry, the flag registry and the bands.

Column names follow doc/conventions.rst; nothing else in galmix spells them out. Every column carries
a unit and a description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..models.definitions import ModelDef, get_model
from .flags import FLAGS, PSF_FLAGS

__all__ = [
    "PASSTHROUGH_COLUMNS",
    "ColumnDef",
    "columns_to_table",
    "empty_columns",
    "empty_psf_table",
    "empty_source_table",
    "flux_column",
    "psf_columns",
    "sky_column",
    "source_columns",
]


@dataclass(frozen=True)
class ColumnDef:
    """One output column.

    Parameters
    ----------
    name : `str`
        Column name.
    dtype : `str`
        Numpy dtype string.
    unit : `str` or `None`
        Astropy unit string (`None` for dimensionless / booleans).
    description : `str`
        Column description.
    """

    name: str
    dtype: str
    unit: str | None
    description: str

    @property
    def fill(self) -> float | int | bool:
        """Value of an unfitted row: NaN for floats, 0 for ints, False for booleans."""
        kind = np.dtype(self.dtype).kind
        return np.nan if kind == "f" else (False if kind == "b" else 0)


PASSTHROUGH_COLUMNS: tuple[ColumnDef, ...] = (
    ColumnDef("objectId", "i8", None, "Object id (unique within the tract), copied from galmix_objects"),
    ColumnDef("parentObjectId", "i8", None, "Id of the blend the object belongs to; 0 when isolated"),
    ColumnDef("patch", "i4", None, "Patch index"),
    ColumnDef("detect_isPrimary", "bool", None, "Copied from galmix_objects"),
)
"""Columns copied from the input object table (filled with defaults when absent there)."""


def flux_column(model: ModelDef | str, band: str, component: str | None = None) -> str:
    """Name of a flux column.

    Parameters
    ----------
    model : `ModelDef` or `str`
        The model.
    band : `str`
        Band name.
    component : `str`, optional
        Component name for the flux of one component of a multi-component model; `None` for the total.
    """
    model = get_model(model) if isinstance(model, str) else model
    if component is None or not model.multi:
        return f"{band}_{model.name}Flux"
    return f"{band}_{model.name}_{component}Flux"


def sky_column(model: ModelDef | str, band: str) -> str:
    """Name of the column of the flat sky level fitted with a source in one band (``+ "Err"``: its error)."""
    return f"{band}_{model if isinstance(model, str) else model.name}_sky"


def source_columns(model: ModelDef | str, bands: Sequence[str]) -> list[ColumnDef]:
    """Columns of a ``galmix_<Model>_patch`` table.

    Parameters
    ----------
    model : `ModelDef` or `str`
        The model.
    bands : sequence of `str`
        Bands, in output order.

    Returns
    -------
    columns : `list` [`ColumnDef`]
        Pass-through columns, fluxes, shape, centroid, fit statistics and flags.
    """
    m = get_model(model) if isinstance(model, str) else model
    cols = list(PASSTHROUGH_COLUMNS)
    for band in bands:
        cols.append(ColumnDef(flux_column(m, band), "f8", "nJy", f"Total {m.name} model flux in band {band}"))
        cols.append(ColumnDef(flux_column(m, band) + "Err", "f8", "nJy",
                              f"1-sigma error of the total {m.name} flux in band {band}, shape marginalised"))
        if m.multi:
            for comp in m.components:
                name = flux_column(m, band, comp.name)
                cols.append(ColumnDef(name, "f8", "nJy", f"Flux of the {comp.name} component in band {band}"))
                cols.append(ColumnDef(name + "Err", "f8", "nJy",
                                      f"1-sigma error of the {comp.name} flux in band {band}"))
    for band in bands:
        sky = sky_column(m, band)
        cols.append(ColumnDef(sky, "f8", "nJy", f"Flat local sky level per pixel in band {band}, fitted "
                              "jointly with the object (NaN when none was fitted: no pedestal seen)"))
        cols.append(ColumnDef(sky + "Err", "f8", "nJy", f"1-sigma error of {sky}, marginalised over the model"))
    for comp in m.components:
        if not comp.has_shape:
            continue
        p = m.component_prefix(comp)
        what = f"the {comp.name} component" if m.multi else "the profile"
        cols += [
            ColumnDef(f"{p}_reff", "f8", "arcsec", f"Half-light radius (major axis) of {what}"),
            ColumnDef(f"{p}_reffPix", "f8", "pix", f"Half-light radius (major axis) of {what}, pixels"),
            ColumnDef(f"{p}_reffErr", "f8", "arcsec", f"1-sigma error of {p}_reff"),
            ColumnDef(f"{p}_q", "f8", None, f"Axis ratio b/a of {what}"),
            ColumnDef(f"{p}_qErr", "f8", None, f"1-sigma error of {p}_q"),
            ColumnDef(f"{p}_theta", "f8", "deg", f"Position angle of the major axis of {what}, "
                      "counter-clockwise from +x"),
        ]
        if comp.free_n:
            cols += [
                ColumnDef(f"{p}_n", "f8", None, f"Sersic index of {what}"),
                ColumnDef(f"{p}_nErr", "f8", None, f"1-sigma error of {p}_n"),
            ]
    n = m.name
    cols += [
        ColumnDef(f"{n}_ra", "f8", "deg", "Right ascension of the model centre (ICRS)"),
        ColumnDef(f"{n}_dec", "f8", "deg", "Declination of the model centre (ICRS)"),
        ColumnDef(f"{n}_x", "f8", "pix", "Model centre x (tract pixels)"),
        ColumnDef(f"{n}_y", "f8", "pix", "Model centre y (tract pixels)"),
        ColumnDef(f"{n}_xErr", "f8", "pix", "1-sigma error of the centre x (NaN when fixed)"),
        ColumnDef(f"{n}_yErr", "f8", "pix", "1-sigma error of the centre y (NaN when fixed)"),
        ColumnDef(f"{n}_chi2", "f8", None, "Chi-square of the best fit summed over bands and pixels"),
        ColumnDef(f"{n}_nPix", "i4", None, "Number of pixels with non-zero weight used in the fit"),
        ColumnDef(f"{n}_nIter", "i4", None, "Number of optimizer iterations"),
        ColumnDef(f"{n}_nResidualSources", "i4", None, "Point sources found in the fit's residuals (sources "
                  "that detection missed) and fitted jointly with this object"),
        ColumnDef(f"{n}_time", "f8", "s", "Wall-clock time of the fit of this object (or its share of "
                  "a joint blend fit)"),
        ColumnDef(f"{n}_flag", "bool", None, "Any fatal failure flag is set: do not trust the fit"),
    ]
    cols += [ColumnDef(f"{n}_flag_{f.name}", "bool", None, f.description) for f in FLAGS]
    return cols


def empty_columns(cols: Sequence[ColumnDef], nrow: int) -> dict[str, np.ndarray]:
    """Arrays of unfitted values for ``cols`` (fast to fill row by row; see `columns_to_table`)."""
    return {c.name: np.full(nrow, c.fill, dtype=c.dtype) for c in cols}


def columns_to_table(cols: Sequence[ColumnDef], arrays: dict[str, np.ndarray]) -> Table:
    """An astropy table of ``arrays`` with the units and descriptions of ``cols``, in ``cols`` order."""
    return Table([arrays[c.name] for c in cols], names=[c.name for c in cols], units=[c.unit for c in cols],
                 descriptions=[c.description for c in cols], copy=False)


def _table(cols: Sequence[ColumnDef], nrow: int, meta_model: str | None = None) -> Table:
    t = columns_to_table(cols, empty_columns(cols, nrow))
    if meta_model is not None:
        t.meta["galmix_model"] = meta_model
    return t


def empty_source_table(model: ModelDef | str, bands: Sequence[str], nrow: int) -> Table:
    """A table of ``nrow`` unfitted rows (floats NaN, ints 0, flags False).

    Parameters
    ----------
    model : `ModelDef` or `str`
        The model.
    bands : sequence of `str`
        Bands.
    nrow : `int`
        Number of rows.
    """
    m = get_model(model) if isinstance(model, str) else model
    return _table(source_columns(m, bands), nrow, m.name)


def psf_columns(n_gauss: int) -> list[ColumnDef]:
    """Columns of a ``galmix_psf_fits`` table for an ``n_gauss``-component PSF mixture.

    Parameters
    ----------
    n_gauss : `int`
        Number of Gaussians (1 to 4).
    """
    cols = [
        ColumnDef("cell_x", "i4", None, "Cell index along x"),
        ColumnDef("cell_y", "i4", None, "Cell index along y"),
        ColumnDef("x", "f8", "pix", "Position where the PSF was evaluated (tract pixels)"),
        ColumnDef("y", "f8", "pix", "Position where the PSF was evaluated (tract pixels)"),
    ]
    for i in range(n_gauss):
        cols += [
            ColumnDef(f"psf_g{i}_frac", "f8", None,
                      f"Flux fraction of Gaussian {i} of the unit-sum kernel (the sum is the light the "
                      "mixture holds, just below 1; not renormalised)"),
            ColumnDef(f"psf_g{i}_dx", "f8", "pix", f"x offset of Gaussian {i} from the kernel centre"),
            ColumnDef(f"psf_g{i}_dy", "f8", "pix", f"y offset of Gaussian {i} from the kernel centre"),
            ColumnDef(f"psf_g{i}_xx", "f8", "pix2", f"Covariance xx of Gaussian {i}"),
            ColumnDef(f"psf_g{i}_yy", "f8", "pix2", f"Covariance yy of Gaussian {i}"),
            ColumnDef(f"psf_g{i}_xy", "f8", "pix2", f"Covariance xy of Gaussian {i}"),
        ]
    cols += [
        ColumnDef("psf_chi2", "f8", None, "Sum of squared residuals of the mixture fit divided by the sum of "
                  "squared kernel pixels (fractional residual power)"),
        ColumnDef("psf_nIter", "i4", None, "Number of optimizer iterations"),
        ColumnDef("psf_flag", "bool", None, "Any fatal PSF-fit flag is set"),
    ]
    cols += [ColumnDef(f"psf_flag_{f.name}", "bool", None, f.description) for f in PSF_FLAGS]
    return cols


def empty_psf_table(n_gauss: int, nrow: int) -> Table:
    """A ``galmix_psf_fits`` table of ``nrow`` unfitted rows."""
    return _table(psf_columns(n_gauss), nrow)

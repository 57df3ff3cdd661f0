"""Output table schemas, derived from the model registry, the flag registry and the bands.

Column names follow Rubin's Object schema (``lsst-sdm-schemas``, ``dp1.yaml``, table ``Object``): the
Sersic fit's columns are DP1's, other models and galmix-only columns follow the same patterns
(``{band}_{model}Flux``, ``{model}_{name}``, ``{model}_{reason}_flag``; doc/conventions.rst). Every
column is declared here once, with a unit and a description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..models.definitions import ModelDef, get_model
from .flags import FLAGS, PSF_FLAGS

__all__ = [
    "EXTENDEDNESS_RATIO",
    "FLUX_NAMES",
    "PASSTHROUGH_COLUMNS",
    "PIXEL",
    "REF_BANDS",
    "ColumnDef",
    "columns_to_table",
    "empty_columns",
    "empty_psf_table",
    "empty_source_table",
    "flag_column",
    "flux_column",
    "psf_columns",
    "sky_column",
    "sky_grad_column",
    "source_columns",
    "summary_flag_column",
    "tract_columns",
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
    def fill(self) -> float | int | bool | str:
        """Value of an unfitted row: NaN for floats, 0 for ints, False for booleans, "" for strings."""
        kind = np.dtype(self.dtype).kind
        return np.nan if kind == "f" else (False if kind == "b" else ("" if kind == "U" else 0))


PIXEL = "pixel"
"""Unit string of pixel quantities (Rubin's Object schema spells it ``pixel``)."""

PASSTHROUGH_COLUMNS: tuple[ColumnDef, ...] = (
    ColumnDef("objectId", "i8", None, "Unique id of the object within the tract, copied from galmix_objects"),
    ColumnDef("parentObjectId", "i8", None, "Id of the blend the object belongs to; 0 when isolated"),
    ColumnDef("patch", "i8", None, "Skymap patch ID"),
    ColumnDef("detect_isPrimary", "bool", None, "Copied from galmix_objects"),
)
"""Columns copied from the input object table (filled with defaults when absent there)."""

FLUX_NAMES: dict[str, str] = {"point": "psf"}
"""Flux-column names of models whose fluxes have a Rubin name: the point-source fit gives
``{band}_psfFlux``. Every other model's fluxes are ``{band}_{model}Flux``."""

REF_BANDS: tuple[str, ...] = ("i", "r", "z", "y", "g", "u")
"""Reference-band priority (Rubin's multiband merge order)."""

EXTENDEDNESS_RATIO = 0.985
"""An object is extended (``refExtendedness`` 1) when its PSF flux is below this fraction of the
reference model's flux in the reference band (Rubin's flux-ratio criterion)."""


def _model(model: ModelDef | str) -> ModelDef:
    return get_model(model) if isinstance(model, str) else model


def flux_column(model: ModelDef | str, band: str, component: str | None = None) -> str:
    """Name of a flux column: ``{band}_{model}Flux`` (``{band}_psfFlux`` for the point model).

    Parameters
    ----------
    model : `ModelDef` or `str`
        The model.
    band : `str`
        Band name.
    component : `str`, optional
        Component name for the flux of one component of a multi-component model; `None` for the total.
    """
    model = _model(model)
    name = FLUX_NAMES.get(model.name, model.name)
    if component is None or not model.multi:
        return f"{band}_{name}Flux"
    return f"{band}_{name}_{component}Flux"


def flag_column(model: ModelDef | str, flag: str) -> str:
    """Column of one flag of a model's fit: ``{model}_{reason}_flag`` (`lsst.galmix.fitting.flags.FLAGS`)."""
    name = _model(model).name
    fdef = next((f for f in FLAGS if f.name == flag), None)
    if fdef is None:
        raise KeyError(f"unknown flag {flag!r}")
    return f"{name}_{fdef.column or fdef.name}_flag"


def summary_flag_column(model: ModelDef | str) -> str:
    """Column of a model's summary flag (any fatal flag): ``{model}_flag``."""
    return f"{_model(model).name}_flag"


def sky_column(model: ModelDef | str, band: str) -> str:
    """Name of the column of the flat sky level fitted with a source in one band (``+ "Err"``: its error)."""
    return f"{band}_{model if isinstance(model, str) else model.name}_sky"


def sky_grad_column(model: ModelDef | str, band: str, axis: str) -> str:
    """Name of the column of the sky plane's gradient along ``axis`` (``"x"`` or ``"y"``) in one band
    (``+ "Err"``: its error)."""
    return f"{sky_column(model, band)}Grad{axis.upper()}"


def source_columns(model: ModelDef | str, bands: Sequence[str]) -> list[ColumnDef]:
    """Columns of a ``galmix_<Model>_patch`` table.

    The Sersic model's columns are those of Rubin's DP1 ``Object`` table (names, units, data types);
    other models follow the same patterns (doc/conventions.rst).

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
    m = _model(model)
    n = m.name
    fit = f"the multiband Gaussian mixture {m.description} model fit"
    cols = list(PASSTHROUGH_COLUMNS)
    for band in bands:
        cols.append(ColumnDef(flux_column(m, band), "f4", "nJy",
                              f"{band}-band flux from {fit} (unconstrained linear solution at the best-fit "
                              "shape; may be negative)"))
        cols.append(ColumnDef(flux_column(m, band) + "Err", "f4", "nJy",
                              f"Error on the {band}-band flux from {fit} (marginalised over the constrained "
                              "shape parameters, conditional on the unconstrained ones)"))
        if m.multi:
            for comp in m.components:
                name = flux_column(m, band, comp.name)
                cols.append(ColumnDef(name, "f4", "nJy", f"{band}-band flux of the {comp.name} component "
                                      f"from {fit}"))
                cols.append(ColumnDef(name + "Err", "f4", "nJy", f"Error on the {band}-band flux of the "
                                      f"{comp.name} component from {fit}"))
    for band in bands:
        sky = sky_column(m, band)
        cols.append(ColumnDef(sky, "f4", "nJy", f"Flat local sky level per pixel in band {band}, fitted "
                              "jointly with the object (NaN when none was fitted: no pedestal seen)"))
        cols.append(ColumnDef(sky + "Err", "f4", "nJy", f"1-sigma error of {sky}, marginalised over the model"))
        for axis in ("x", "y"):
            grad = sky_grad_column(m, band, axis)
            cols.append(ColumnDef(grad, "f4", "nJy / pixel", f"Gradient along {axis} of the local sky plane in band "
                                  f"{band} (sky='plane'; NaN otherwise); {sky} is the plane at the object"))
            cols.append(ColumnDef(grad + "Err", "f4", "nJy / pixel", f"1-sigma error of {grad}"))
    for comp in m.components:
        if not comp.has_shape:
            continue
        p = m.component_prefix(comp)
        what = f"the {comp.name} component" if m.multi else "the profile"
        ellipse = f"of the half-light ellipse of {what} from {fit}"
        for key, unit, desc in (
            ("reff_x", PIXEL, f"Effective radius (x-axis): sqrt of the xx second moment {ellipse}"),
            ("reff_y", PIXEL, f"Effective radius (y-axis): sqrt of the yy second moment {ellipse}"),
            ("rho", None, f"Ellipse rho (correlation coefficient) {ellipse}"),
        ):
            cols.append(ColumnDef(f"{p}_{key}", "f4", unit, desc))
            cols.append(ColumnDef(f"{p}_{key}Err", "f4", unit, f"Error on {p}_{key} (NaN when unconstrained)"))
        cols += [
            ColumnDef(f"{p}_reff", "f4", "arcsec", f"Half-light radius (major axis) of {what}"),
            ColumnDef(f"{p}_reffErr", "f4", "arcsec", f"Error on {p}_reff (NaN when unconstrained)"),
            ColumnDef(f"{p}_reffPix", "f4", PIXEL, f"Half-light radius (major axis) of {what}, pixels"),
            ColumnDef(f"{p}_q", "f4", None, f"Axis ratio b/a of {what}"),
            ColumnDef(f"{p}_qErr", "f4", None, f"Error on {p}_q (NaN when unconstrained)"),
            ColumnDef(f"{p}_theta", "f4", "deg", f"Position angle of the major axis of {what}, "
                      "counter-clockwise from +x"),
        ]
        if comp.free_n:
            cols += [
                ColumnDef(f"{p}_index", "f4", None, f"Sersic profile index parameter of {what} from {fit}"),
                ColumnDef(f"{p}_indexErr", "f4", None, f"Error on the Sersic profile index parameter of {what} "
                          f"from {fit} (NaN when unconstrained or at its lower bound)"),
            ]
    cols += [
        ColumnDef(f"{n}_x", "f8", PIXEL, f"Centroid (tract, x-axis) from {fit}"),
        ColumnDef(f"{n}_y", "f8", PIXEL, f"Centroid (tract, y-axis) from {fit}"),
        ColumnDef(f"{n}_ra", "f8", "deg", f"Centroid (right ascension) from {fit}"),
        ColumnDef(f"{n}_dec", "f8", "deg", f"Centroid (declination) from {fit}"),
        ColumnDef(f"{n}_xErr", "f4", PIXEL, f"Error on the centroid (tract, x-axis) from {fit} (NaN when fixed)"),
        ColumnDef(f"{n}_yErr", "f4", PIXEL, f"Error on the centroid (tract, y-axis) from {fit} (NaN when fixed)"),
        ColumnDef(f"{n}_raErr", "f4", "deg", f"Error on the centroid (right ascension) from {fit}"),
        ColumnDef(f"{n}_decErr", "f4", "deg", f"Error on the centroid (declination) from {fit}"),
        ColumnDef(f"{n}_chisq_reduced", "f4", None, f"Reduced chi-squared of the best-fit model parameters "
                  f"(chi-square divided by the number of data points) of {fit}"),
        ColumnDef(f"{n}_n_iter", "i4", None, f"Number of iterations in the non-linear fit of {fit}"),
        ColumnDef(f"{n}_n_eval_jac", "i4", None, f"Number of Jacobian evaluations of {fit} (one set of normal "
                  "equations per iteration)"),
        ColumnDef(f"{n}_n_pix", "i4", None, "Number of pixels with non-zero weight used in the fit"),
        ColumnDef(f"{n}_n_residual_sources", "i4", None, "Point sources found in the fit's residuals (sources "
                  "that detection missed) and fitted jointly with this object"),
        ColumnDef(summary_flag_column(m), "bool", None, "Any fatal failure flag is set: do not trust the fit"),
    ]
    cols += [ColumnDef(flag_column(m, f.name), "bool", None, _flag_description(f, fit)) for f in FLAGS]
    return cols


def _flag_description(flag, fit: str) -> str:
    if flag.name == "exception":
        return f"Flag set for failures with an unexpected or unknown cause for {fit} (see the log)"
    if flag.name == "no_data":
        return f"Flag set when there is insufficient data to fit for {fit}"
    return flag.description


def tract_columns(bands: Sequence[str]) -> list[ColumnDef]:
    """Identity and reference columns that ``consolidateTract`` adds before the models' columns.

    Parameters
    ----------
    bands : sequence of `str`
        Bands (unused today; the signature is that of the other column builders).
    """
    del bands
    return [
        ColumnDef("objectId", "i8", None, "Unique id. Unique ObjectID"),
        ColumnDef("coord_ra", "f8", "deg", "Fiducial ICRS Right Ascension of centroid used for database "
                  "indexing (the first consolidated model's centroid; the detection position if unfitted)"),
        ColumnDef("coord_dec", "f8", "deg", "Fiducial ICRS Declination of centroid used for database "
                  "indexing (the first consolidated model's centroid; the detection position if unfitted)"),
        ColumnDef("tract", "i8", None, "Skymap tract ID"),
        ColumnDef("patch", "i8", None, "Skymap patch ID"),
        ColumnDef("refBand", "U1", None, "Reference band: the first of i, r, z, y, g, u in which the reference "
                  "model's flux has S/N >= 5 (else the band of highest S/N)"),
        ColumnDef("refExtendedness", "f4", None, "Flux-ratio measure of whether an object is point-like (0) or "
                  "extended (1). Reference band: 1 when psfFlux < 0.985 of the reference model's flux"),
        ColumnDef("parentObjectId", "i8", None, "Id of the blend the object belongs to; 0 when isolated"),
        ColumnDef("detect_isPrimary", "bool", None, "Copied from galmix_objects"),
        ColumnDef("isPrimary", "bool", None, "detect_isPrimary with duplicates across patch overlaps removed"),
    ]


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

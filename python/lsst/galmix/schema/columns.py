"""Every column name of galmix's tables, built here and nowhere else.

Column names follow Rubin's Object schema (``lsst-sdm-schemas``, ``dp1.yaml``, table ``Object``): the
Sersic fit's columns are DP1's, other models and galmix-only columns follow the same patterns
(``{band}_{model}Flux``, ``{model}_{name}``, ``{model}_{reason}_flag``; doc/conventions.rst). Every
column is declared here once, with a unit and a description; code elsewhere asks this module for a name
(`flux_column`, `param_column`, `flag_column`, ...) instead of spelling it (tests/test_schema_names.py
checks that).

Tables: ``galmix_objects`` (`object_columns`), ``galmix_psf_fits`` (`psf_columns`),
``galmix_<Model>_patch`` (`source_columns`), ``objectTable_tract_galmix`` (`tract_columns` then the
models' columns) and the matched table (object columns plus `reference_column` names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..models.definitions import ComponentDef, ModelDef, get_model
from ..models.psf_mixture import PsfMixture
from .flags import DETECTION_FLAGS, PSF_FLAGS, SOURCE_FLAGS, FlagDef

__all__ = [
    "EXTENDEDNESS_RATIO",
    "FLUX_NAMES",
    "OBJECT_ID_STRIDE",
    "PARAM_NAMES",
    "PASSTHROUGH_COLUMNS",
    "PIXEL",
    "PSF_GAUSSIAN_PARAMS",
    "REF_BANDS",
    "REF_PREFIX",
    "ColumnDef",
    "columns_to_table",
    "component_prefix",
    "detection_flag_column",
    "empty_columns",
    "empty_psf_table",
    "empty_source_table",
    "error_column",
    "flag_column",
    "flux_column",
    "init_flux_column",
    "object_columns",
    "param_column",
    "psf_columns",
    "psf_flag_column",
    "psf_gaussian_column",
    "psf_mixture_from_row",
    "psf_mixture_row",
    "reference_column",
    "reference_flux_column",
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


PARAM_NAMES: tuple[str, ...] = (
    "x", "y", "ra", "dec", "reff_x", "reff_y", "rho", "reff", "reffPix", "q", "pa", "index",
    "chisq_reduced", "n_iter", "n_eval_jac", "n_pix", "n_residual_sources",
)
"""Quantities of a fit with a ``{model}_{name}`` (or ``{model}_{component}_{name}``) column."""

PSF_GAUSSIAN_PARAMS: tuple[str, ...] = ("frac", "dx", "dy", "xx", "yy", "xy")
"""Per-Gaussian quantities of a PSF mixture, columns ``psf_g{i}_{name}``."""

OBJECT_ID_STRIDE = 10_000_000
"""``objectId = patch * OBJECT_ID_STRIDE + n`` with n = 1, 2, ... per patch: unique within a tract."""

REF_PREFIX = "refcat_"
"""Prefix of reference-catalogue columns in the matched table."""


def _as_model(model: ModelDef | str) -> ModelDef:
    return get_model(model) if isinstance(model, str) else model


def _component(model: ModelDef, component: ComponentDef | str | None) -> ComponentDef | None:
    if component is None or isinstance(component, ComponentDef):
        return component
    comp = next((c for c in model.components if c.name == component), None)
    if comp is None:
        raise KeyError(f"model {model.name!r} has no component {component!r}")
    return comp


def component_prefix(model: ModelDef | str, component: ComponentDef | str | None = None) -> str:
    """Column prefix of a component's quantities: the model name, or ``{model}_{component}`` when the
    model has several components (``sersic``, ``expdev_exp``).

    Parameters
    ----------
    model : `ModelDef` or `str`
        The model.
    component : `ComponentDef` or `str`, optional
        The component; `None` for quantities of the whole model (centroid, fit statistics).
    """
    m = _as_model(model)
    comp = _component(m, component)
    return f"{m.name}_{comp.name}" if comp is not None and m.multi else m.name


def param_column(model: ModelDef | str, name: str, component: ComponentDef | str | None = None) -> str:
    """Name of a parameter or fit-statistic column: ``{model}_{name}`` (``{model}_{component}_{name}``
    for a component of a multi-component model).

    Parameters
    ----------
    model : `ModelDef` or `str`
        The model.
    name : `str`
        One of `PARAM_NAMES`.
    component : `ComponentDef` or `str`, optional
        The component, for shape quantities.

    Raises
    ------
    KeyError
        If ``name`` is not one of `PARAM_NAMES`.
    """
    if name not in PARAM_NAMES:
        raise KeyError(f"unknown parameter column {name!r}; known: {', '.join(PARAM_NAMES)}")
    return f"{component_prefix(model, component)}_{name}"


def error_column(column: str) -> str:
    """Name of the 1-sigma error column of a measurement column: ``{column}Err``."""
    return f"{column}Err"


def flux_column(model: ModelDef | str, band: str, component: ComponentDef | str | None = None) -> str:
    """Name of a flux column: ``{band}_{model}Flux`` (``{band}_psfFlux`` for the point model).

    Parameters
    ----------
    model : `ModelDef` or `str`
        The model.
    band : `str`
        Band name.
    component : `ComponentDef` or `str`, optional
        Component for the flux of one component of a multi-component model; `None` for the total.
    """
    m = _as_model(model)
    name = FLUX_NAMES.get(m.name, m.name)
    comp = _component(m, component)
    if comp is None or not m.multi:
        return f"{band}_{name}Flux"
    return f"{band}_{name}_{comp.name}Flux"


def _flag(prefix: str, registry: Sequence[FlagDef], reason: str, what: str) -> str:
    fdef = next((f for f in registry if f.name == reason), None)
    if fdef is None:
        raise KeyError(f"unknown {what} flag {reason!r}")
    return f"{prefix}_{fdef.column or fdef.name}_flag"


def flag_column(model: ModelDef | str, flag: str) -> str:
    """Column of one flag of a model's fit: ``{model}_{reason}_flag``
    (`lsst.galmix.schema.flags.SOURCE_FLAGS`)."""
    return _flag(_as_model(model).name, SOURCE_FLAGS, flag, "source-fit")


def psf_flag_column(flag: str | None = None) -> str:
    """Column of one PSF-fit flag, ``psf_{reason}_flag`` (`lsst.galmix.schema.flags.PSF_FLAGS`), or of
    the summary flag ``psf_flag`` when ``flag`` is `None`."""
    return "psf_flag" if flag is None else _flag("psf", PSF_FLAGS, flag, "PSF-fit")


def detection_flag_column(flag: str) -> str:
    """Column of one detection flag of ``galmix_objects``: ``detect_{reason}_flag``
    (`lsst.galmix.schema.flags.DETECTION_FLAGS`)."""
    return _flag("detect", DETECTION_FLAGS, flag, "detection")


def summary_flag_column(model: ModelDef | str) -> str:
    """Column of a model's summary flag (any fatal flag): ``{model}_flag``."""
    return f"{_as_model(model).name}_flag"


def sky_column(model: ModelDef | str, band: str) -> str:
    """Name of the column of the flat sky level fitted with a source in one band (`error_column`: its
    error)."""
    return f"{band}_{_as_model(model).name}_sky"


def sky_grad_column(model: ModelDef | str, band: str, axis: str) -> str:
    """Name of the column of the sky plane's gradient along ``axis`` (``"x"`` or ``"y"``) in one band
    (`error_column`: its error)."""
    return f"{sky_column(model, band)}Grad{axis.upper()}"


def init_flux_column(band: str) -> str:
    """Name of the first-guess flux column of ``galmix_objects`` in one band: ``{band}_initFlux``."""
    return f"{band}_initFlux"


def psf_gaussian_column(index: int, name: str) -> str:
    """Name of a column of one Gaussian of a PSF mixture: ``psf_g{index}_{name}``.

    Parameters
    ----------
    index : `int`
        Gaussian index.
    name : `str`
        One of `PSF_GAUSSIAN_PARAMS`.
    """
    if name not in PSF_GAUSSIAN_PARAMS:
        raise KeyError(f"unknown PSF mixture column {name!r}; known: {', '.join(PSF_GAUSSIAN_PARAMS)}")
    return f"psf_g{index}_{name}"


def reference_column(name: str) -> str:
    """Name in the matched table of a reference-catalogue column: ``refcat_{name}``."""
    return f"{REF_PREFIX}{name}"


def reference_flux_column(band: str) -> str:
    """Name in the matched table of a reference flux (the DC2-like ``flux_{band}`` of ``truth_summary``):
    ``refcat_flux_{band}``."""
    return reference_column(f"flux_{band}")


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
    m = _as_model(model)
    fit = f"the multiband Gaussian mixture {m.description} model fit"
    cols = list(PASSTHROUGH_COLUMNS)
    for band in bands:
        cols.append(ColumnDef(flux_column(m, band), "f4", "nJy",
                              f"{band}-band flux from {fit} (unconstrained linear solution at the best-fit "
                              "shape; may be negative)"))
        cols.append(ColumnDef(error_column(flux_column(m, band)), "f4", "nJy",
                              f"Error on the {band}-band flux from {fit} (marginalised over the constrained "
                              "shape parameters, conditional on the unconstrained ones; plus the model-misfit "
                              "term of extended components)"))
        if m.multi:
            for comp in m.components:
                name = flux_column(m, band, comp)
                cols.append(ColumnDef(name, "f4", "nJy", f"{band}-band flux of the {comp.name} component "
                                      f"from {fit}"))
                cols.append(ColumnDef(error_column(name), "f4", "nJy", f"Error on the {band}-band flux of the "
                                      f"{comp.name} component from {fit}"))
    for band in bands:
        sky = sky_column(m, band)
        cols.append(ColumnDef(sky, "f4", "nJy", f"Local sky level per pixel in band {band} at the object, fitted "
                              "jointly with the object (NaN when none was fitted: no pedestal seen)"))
        cols.append(ColumnDef(error_column(sky), "f4", "nJy", f"1-sigma error of {sky}, marginalised over the "
                              "model"))
        for axis in ("x", "y"):
            grad = sky_grad_column(m, band, axis)
            cols.append(ColumnDef(grad, "f4", "nJy / pixel", f"Gradient along {axis} of the local sky plane in band "
                                  f"{band} (sky='plane'; NaN otherwise); {sky} is the plane at the object"))
            cols.append(ColumnDef(error_column(grad), "f4", "nJy / pixel", f"1-sigma error of {grad}"))
    for comp in m.components:
        if not comp.has_shape:
            continue
        what = f"the {comp.name} component" if m.multi else "the profile"
        ellipse = f"of the half-light ellipse of {what} from {fit}"

        def par(name: str, comp: ComponentDef = comp) -> str:
            return param_column(m, name, comp)

        for key, unit, desc in (
            ("reff_x", PIXEL, f"Effective radius (x-axis): sqrt of the xx second moment {ellipse}"),
            ("reff_y", PIXEL, f"Effective radius (y-axis): sqrt of the yy second moment {ellipse}"),
            ("rho", None, f"Ellipse rho (correlation coefficient) {ellipse}"),
        ):
            cols.append(ColumnDef(par(key), "f4", unit, desc))
            cols.append(ColumnDef(error_column(par(key)), "f4", unit, f"Error on {par(key)} (NaN when unconstrained)"))
        cols += [
            ColumnDef(par("reff"), "f4", "arcsec", f"Half-light radius (major axis) of {what}"),
            ColumnDef(error_column(par("reff")), "f4", "arcsec", f"Error on {par('reff')} (NaN when unconstrained)"),
            ColumnDef(par("reffPix"), "f4", PIXEL, f"Half-light radius (major axis) of {what}, pixels"),
            ColumnDef(par("q"), "f4", None, f"Axis ratio b/a of {what}"),
            ColumnDef(error_column(par("q")), "f4", None, f"Error on {par('q')} (NaN when unconstrained)"),
            ColumnDef(par("pa"), "f4", "deg", f"Position angle of the major axis of {what}, "
                      "counter-clockwise from +x"),
        ]
        if comp.free_n:
            cols += [
                ColumnDef(par("index"), "f4", None, f"Sersic profile index parameter of {what} from {fit}"),
                ColumnDef(error_column(par("index")), "f4", None, "Error on the Sersic profile index parameter of "
                          f"{what} from {fit} (NaN when unconstrained or at its lower bound)"),
            ]
    cols += [
        ColumnDef(param_column(m, "x"), "f8", PIXEL, f"Centroid (tract, x-axis) from {fit}"),
        ColumnDef(param_column(m, "y"), "f8", PIXEL, f"Centroid (tract, y-axis) from {fit}"),
        ColumnDef(param_column(m, "ra"), "f8", "deg", f"Centroid (right ascension) from {fit}"),
        ColumnDef(param_column(m, "dec"), "f8", "deg", f"Centroid (declination) from {fit}"),
        ColumnDef(error_column(param_column(m, "x")), "f4", PIXEL,
                  f"Error on the centroid (tract, x-axis) from {fit} (NaN when fixed)"),
        ColumnDef(error_column(param_column(m, "y")), "f4", PIXEL,
                  f"Error on the centroid (tract, y-axis) from {fit} (NaN when fixed)"),
        ColumnDef(error_column(param_column(m, "ra")), "f4", "deg",
                  f"Error on the centroid (right ascension) from {fit}"),
        ColumnDef(error_column(param_column(m, "dec")), "f4", "deg",
                  f"Error on the centroid (declination) from {fit}"),
        ColumnDef(param_column(m, "chisq_reduced"), "f4", None, "Reduced chi-squared of the best-fit model "
                  f"parameters (chi-square divided by the number of data points) of {fit}"),
        ColumnDef(param_column(m, "n_iter"), "i4", None, f"Number of iterations in the non-linear fit of {fit}"),
        ColumnDef(param_column(m, "n_eval_jac"), "i4", None, f"Number of Jacobian evaluations of {fit} (one set "
                  "of normal equations per iteration)"),
        ColumnDef(param_column(m, "n_pix"), "i4", None, "Number of pixels with non-zero weight used in the fit"),
        ColumnDef(param_column(m, "n_residual_sources"), "i4", None, "Point sources found in the fit's residuals "
                  "(sources that detection missed) and fitted jointly with this object"),
        ColumnDef(summary_flag_column(m), "bool", None, "Any fatal failure flag is set: do not trust the fit"),
    ]
    cols += [ColumnDef(flag_column(m, f.name), "bool", None, _flag_description(f, fit)) for f in SOURCE_FLAGS]
    return cols


def _flag_description(flag: FlagDef, fit: str) -> str:
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
    descriptions = {
        "frac": ("f8", None, ("Flux fraction of Gaussian {i} of a unit-flux point source (the sum is the light "
                              "the mixture holds, just below psf_kernel_sum; not renormalised)")),
        "dx": ("f8", "pix", "x offset of Gaussian {i} from the kernel centre"),
        "dy": ("f8", "pix", "y offset of Gaussian {i} from the kernel centre"),
        "xx": ("f8", "pix2", "Covariance xx of Gaussian {i}"),
        "yy": ("f8", "pix2", "Covariance yy of Gaussian {i}"),
        "xy": ("f8", "pix2", "Covariance xy of Gaussian {i}"),
    }
    for i in range(n_gauss):
        cols += [ColumnDef(psf_gaussian_column(i, name), dtype, unit, desc.format(i=i))
                 for name, (dtype, unit, desc) in descriptions.items()]
    cols += [
        ColumnDef("psf_chi2", "f8", None, "Sum of squared residuals of the mixture fit divided by the sum of "
                  "squared kernel pixels (fractional residual power)"),
        ColumnDef("psf_kernel_sum", "f8", None, "Sum of the kernel image: the light of a unit-flux point "
                  "source inside the kernel's box (1 for unit-sum kernels); included in the fractions"),
        ColumnDef("psf_nIter", "i4", None, "Number of optimizer iterations"),
        ColumnDef(psf_flag_column(), "bool", None, "Any fatal PSF-fit flag is set"),
    ]
    cols += [ColumnDef(psf_flag_column(f.name), "bool", None, f.description) for f in PSF_FLAGS]
    return cols


def psf_mixture_row(mixture: PsfMixture) -> dict[str, float]:
    """The ``psf_g{i}_*`` columns of a ``galmix_psf_fits`` row holding a mixture."""
    return {psf_gaussian_column(i, name): float(getattr(mixture, name)[i])
            for i in range(mixture.n_gauss) for name in PSF_GAUSSIAN_PARAMS}


def psf_mixture_from_row(row: Mapping | Table) -> PsfMixture:
    """Read a mixture from a ``galmix_psf_fits`` row (any mapping with those column names).

    Raises
    ------
    KeyError
        If the row has no ``psf_g0_frac`` column.
    """
    keys = row.colnames if hasattr(row, "colnames") else list(row.keys())
    n = 0
    while psf_gaussian_column(n, "frac") in keys:
        n += 1
    if n == 0:
        raise KeyError(f"row has no {psf_gaussian_column(0, 'frac')} column")
    return PsfMixture(**{name: [float(row[psf_gaussian_column(i, name)]) for i in range(n)]
                         for name in PSF_GAUSSIAN_PARAMS})


def empty_psf_table(n_gauss: int, nrow: int) -> Table:
    """A ``galmix_psf_fits`` table of ``nrow`` unfitted rows."""
    return _table(psf_columns(n_gauss), nrow)


_OBJECT_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    ("objectId", "int64", None, "Object id, unique within the tract (patch * 10^7 + running number)."),
    ("parentObjectId", "int64", None, "Id of the blend this object belongs to; 0 when isolated."),
    ("nChild", "int32", None, "Number of sources in this object's blend (1 if isolated)."),
    ("footprintLabel", "int32", None, "Value of this object's pixels in galmix_footprints."),
    ("patch", "int32", None, "Patch id."),
    ("x", "float64", "pix", "Centroid x, tract pixels."),
    ("y", "float64", "pix", "Centroid y, tract pixels."),
    ("ra", "float64", "deg", "Right ascension of the centroid (ICRS)."),
    ("dec", "float64", "deg", "Declination of the centroid (ICRS)."),
    ("shape_xx", "float64", "pix2", "Adaptive second moment xx of the detection image (not PSF-corrected)."),
    ("shape_yy", "float64", "pix2", "Adaptive second moment yy of the detection image (not PSF-corrected)."),
    ("shape_xy", "float64", "pix2", "Adaptive second moment xy of the detection image (not PSF-corrected)."),
)


def object_columns(bands: Sequence[str]) -> dict[str, tuple[str, str | None, str]]:
    """The ``galmix_objects`` columns (name -> (dtype, unit, description)) for some bands.

    Identity, centroid and moments, one first-guess flux per band (`init_flux_column`), the patch-inner and
    primary flags, then one column per `lsst.galmix.schema.flags.DETECTION_FLAGS` entry
    (`detection_flag_column`).

    Parameters
    ----------
    bands : sequence of `str`
        Bands of the input coadds.
    """
    columns = {name: (dtype, unit, doc) for name, dtype, unit, doc in _OBJECT_COLUMNS}
    for band in bands:
        columns[init_flux_column(band)] = ("float64", "nJy", f"First-guess flux in band {band}: sum over the footprint.")
    columns["detect_isPatchInner"] = ("bool", None, "Centroid lies in the patch inner region.")
    columns["detect_isPrimary"] = ("bool", None, "Inner to this patch and a deblended leaf (every row is a leaf).")
    for flag in DETECTION_FLAGS:
        columns[detection_flag_column(flag.name)] = ("bool", None, flag.description)
    return columns

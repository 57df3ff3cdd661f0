"""Metrics and plots of a matched table (measured objects against a reference catalogue).

The matched table is the output of `lsst.galmix.analysis.catalogs.build_matched_table`: object columns
with their own names (``<band>_<model>Flux``...), reference columns prefixed ``refcat_`` (DC2-like
``refcat_flux_<band>``, ``refcat_is_pointsource``, ``refcat_ra``...).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from matplotlib.figure import Figure

import lsst.pex.config as pexConfig

from ..models.definitions import get_model
from ..schema import (
    error_column,
    flux_column,
    param_column,
    reference_column,
    reference_flux_column,
    summary_flag_column,
)
from .catalogs import column_values
from .plots import PanelData, plot_binned_panels, plot_completeness_purity, plot_size_magnitude
from .stats import binned_stats, completeness_purity, flux_to_mag, mag_bins, sigma_mad

__all__ = [
    "CHI_MIN_SNR",
    "CHI_SNR_EDGES",
    "COLORS",
    "MatchedSpec",
    "compute_metrics",
    "make_plots",
    "matched_columns",
    "nan_error_fraction",
    "plot_names",
    "ref_blendedness",
]

_column = functools.partial(column_values, required=False)
"""A column of the matched table as an array; all ``fill`` when the table lacks it."""

CHI_MIN_SNR = 10.0
"""Measured S/N (flux / error) above which the flux chi is summarised (``fluxChiSnr``)."""

COLORS = (("g", "r"), ("r", "i"), ("i", "z"))
"""Colours reported, as band pairs."""


class MatchedSpec(pexConfig.Config):
    """What to measure in a matched table."""

    model = pexConfig.Field[str](
        doc="Model whose columns are compared (<band>_<model>Flux, <model>_ra...): a name of the model "
        "registry",
        default="sersic",
    )
    bands = pexConfig.ListField[str](
        doc="Bands analysed (those without columns in the table are skipped)", default=list("ugrizy")
    )
    mag_min = pexConfig.Field[float](doc="First magnitude bin edge of the binned statistics", default=17.0)
    mag_max = pexConfig.Field[float](doc="Last magnitude bin edge of the binned statistics", default=27.0)
    mag_width = pexConfig.RangeField[float](
        doc="Magnitude bin width of the binned statistics", default=1.0, min=0.0, inclusiveMin=False
    )
    summary_min = pexConfig.Field[float](
        doc="Bright end of the reference-magnitude range of the one-number summaries", default=20.0
    )
    summary_max = pexConfig.Field[float](
        doc="Faint end of the reference-magnitude range of the one-number summaries", default=24.0
    )
    selection_band = pexConfig.Field[str](
        doc="Band of the reference magnitude used for completeness, colours, positions and sizes; one of "
        "bands",
        default="r",
    )

    max_ref_blendedness = pexConfig.Field[float](
        doc="The flux chi summary (fluxChiSnr) counts rows whose reference is isolated among the references: "
        "ref_blendedness (in selection_band) below this, or unknown",
        default=0.01,
    )
    psf_fwhm = pexConfig.RangeField[float](
        doc="PSF FWHM (arcsec) of the profiles ref_blendedness approximates the references with",
        default=0.8, min=0.0, inclusiveMin=False,
    )

    def validate(self) -> None:
        super().validate()
        get_model(self.model)
        if self.selection_band not in self.bands:
            raise pexConfig.FieldValidationError(
                MatchedSpec.selection_band, self, "selection_band must be one of bands"
            )
        if not (self.mag_min < self.mag_max and self.summary_min < self.summary_max):
            raise pexConfig.FieldValidationError(MatchedSpec.mag_max, self, "Empty magnitude range")

    @property
    def edges(self) -> np.ndarray:
        """Magnitude bin edges."""
        return mag_bins(self.mag_min, self.mag_max, self.mag_width)


@dataclass
class _Columns:
    """Arrays extracted once from the matched table."""

    bands: list[str]
    good: np.ndarray
    has_ref: np.ndarray
    has_obj: np.ndarray
    primary: np.ndarray
    is_star: np.ndarray
    isolated: np.ndarray
    flux: dict[str, np.ndarray]
    flux_err: dict[str, np.ndarray]
    ref_flux: dict[str, np.ndarray]
    selection: str


def ref_blendedness(table: Table, band: str = "r", psf_fwhm: float = 0.8) -> np.ndarray:
    """Per row, the fraction of its reference's flux that the other references add to a fit of it.

    Every reference is approximated by a round Gaussian of its PSF-convolved size (variance
    ``(psf_fwhm / 2.355)^2 + (reff / 1.177)^2``; ``refcat_reff`` 0 when absent: stars, catalogues
    without sizes). The light of reference ``j`` biases a profile-weighted flux of ``i`` by the overlap
    of their profiles over the self-overlap of ``i``: ``sum_j (F_j / F_i) 2 s_i / (s_i + s_j)
    exp(-d^2 / (2 (s_i + s_j)))``. This counts neighbours that detection did not separate (unrecognised
    blends), which ``parentObjectId`` 0 does not exclude: for them ``measured - true`` is the neighbour's
    light, not the error of the measurement.

    Parameters
    ----------
    table : `astropy.table.Table`
        Matched table (``refcat_ra``, ``refcat_dec``, ``refcat_flux_<band>``; every reference row,
        matched or not).
    band : `str`
        Band of the fluxes.
    psf_fwhm : `float`
        PSF FWHM, arcsec.

    Returns
    -------
    blendedness : `numpy.ndarray`
        Per row (NaN without a reference with a positive flux).
    """
    from scipy.spatial import cKDTree

    ra = column_values(table, reference_column("ra"), required=False).astype(float)
    dec = column_values(table, reference_column("dec"), required=False).astype(float)
    flux = column_values(table, reference_flux_column(band), required=False).astype(float)
    reff = np.nan_to_num(column_values(table, reference_column("reff"), 0.0, required=False).astype(float))
    out = np.full(len(table), np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec) & (flux > 0)
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    dec0 = np.deg2rad(np.median(dec[idx]))
    xy = np.column_stack([ra[idx] * np.cos(dec0), dec[idx]]) * 3600.0
    var = (psf_fwhm / 2.3548) ** 2 + (reff[idx] / 1.1774) ** 2
    # Beyond 6 sigma of the widest pair the overlap is below 1e-7 of the neighbour's flux.
    radius = 6.0 * np.sqrt(2.0 * min(float(var.max()), 100.0))
    pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
    blend = np.zeros(idx.size)
    if pairs.size:
        i, j = pairs[:, 0], pairs[:, 1]
        d2 = ((xy[i] - xy[j]) ** 2).sum(axis=1)
        s = var[i] + var[j]
        overlap = np.exp(-d2 / (2.0 * s))
        f = flux[idx]
        np.add.at(blend, i, f[j] / f[i] * 2.0 * var[i] / s * overlap)
        np.add.at(blend, j, f[i] / f[j] * 2.0 * var[j] / s * overlap)
    out[idx] = blend
    return out



def matched_columns(table: Table, spec: MatchedSpec) -> _Columns:
    """Extract the arrays the metrics and plots use.

    Parameters
    ----------
    table : `astropy.table.Table`
        Matched table.
    spec : `MatchedSpec`
        What to measure.

    Returns
    -------
    columns : `_Columns`
        Flags, classes and fluxes per band; ``good`` = matched, primary and not flagged.
    """
    m = spec.model
    has_ref = _column(table, "match_hasRef", False).astype(bool)
    has_obj = _column(table, "match_hasObject", False).astype(bool)
    primary_name = "isPrimary" if "isPrimary" in table.colnames else "detect_isPrimary"
    primary = _column(table, primary_name, False).astype(bool)
    flagged = _column(table, summary_flag_column(m), True).astype(bool)
    is_star = _column(table, reference_column("is_pointsource"), False).astype(bool)
    bands = [
        b for b in spec.bands if flux_column(m, b) in table.colnames and reference_flux_column(b) in table.colnames
    ]
    return _Columns(
        bands=bands,
        good=has_ref & has_obj & primary & ~flagged,
        has_ref=has_ref,
        has_obj=has_obj,
        primary=primary,
        is_star=is_star,
        isolated=(_column(table, "parentObjectId", 0) == 0)
        & ~(ref_blendedness(table, spec.selection_band, spec.psf_fwhm) >= spec.max_ref_blendedness),
        flux={b: _column(table, flux_column(m, b)).astype(float) for b in bands},
        flux_err={b: _column(table, error_column(flux_column(m, b))).astype(float) for b in bands},
        ref_flux={b: _column(table, reference_flux_column(b)).astype(float) for b in bands},
        selection=f"matched, {primary_name}, not {summary_flag_column(m)}",
    )


def _classes(cols: _Columns) -> dict[str, np.ndarray]:
    return {"galaxies": cols.good & ~cols.is_star, "stars": cols.good & cols.is_star}


def _summary(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> dict[str, float | int | None]:
    sel = np.isfinite(x) & np.isfinite(y) & (x >= lo) & (x < hi)
    med = float(np.median(y[sel])) if sel.any() else float("nan")
    smad = sigma_mad(y[sel])
    return {
        "count": int(sel.sum()),
        "median": med if np.isfinite(med) else None,
        "sigma_mad": smad if np.isfinite(smad) else None,
    }


def _mag_diff(cols: _Columns, band: str) -> tuple[np.ndarray, np.ndarray]:
    ref_mag = flux_to_mag(cols.ref_flux[band])
    return ref_mag, flux_to_mag(cols.flux[band]) - ref_mag


def _flux_chi(cols: _Columns, band: str) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        chi = (cols.flux[band] - cols.ref_flux[band]) / cols.flux_err[band]
    return flux_to_mag(cols.ref_flux[band]), chi


def _color_diff(cols: _Columns, b1: str, b2: str, sel_band: str) -> tuple[np.ndarray, np.ndarray]:
    meas = flux_to_mag(cols.flux[b1]) - flux_to_mag(cols.flux[b2])
    ref = flux_to_mag(cols.ref_flux[b1]) - flux_to_mag(cols.ref_flux[b2])
    return flux_to_mag(cols.ref_flux[sel_band]), meas - ref


def _position_diff(table: Table, spec: MatchedSpec) -> tuple[np.ndarray, np.ndarray]:
    """RA*cos(dec) and Dec differences, measured minus reference, in mas."""
    ra = _column(table, param_column(spec.model, "ra")).astype(float)
    dec = _column(table, param_column(spec.model, "dec")).astype(float)
    ref_ra = _column(table, reference_column("ra")).astype(float)
    ref_dec = _column(table, reference_column("dec")).astype(float)
    dra = ((ra - ref_ra + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(ref_dec)) * 3.6e6
    return dra, (dec - ref_dec) * 3.6e6


def _completeness(
    cols: _Columns, ref_mag: np.ndarray, label: str, edges: np.ndarray
) -> dict[str, np.ndarray]:
    """Completeness of the references of one class; a match counts only if the object is primary."""
    ref_rows = cols.has_ref & (cols.is_star == (label == "stars"))
    primary_objects = cols.has_obj & cols.primary
    return completeness_purity(
        ref_mag[ref_rows], primary_objects[ref_rows], np.array([]), np.array([], dtype=bool), edges
    )


def _purity(cols: _Columns, meas_mag: np.ndarray, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Purity of the primary objects (matched to any reference)."""
    primary_objects = cols.has_obj & cols.primary
    no_refs = np.array([]), np.array([], dtype=bool)
    return completeness_purity(*no_refs, meas_mag[primary_objects], cols.has_ref[primary_objects], edges)


def nan_error_fraction(table: Table, model: str, bands: Sequence[str]) -> dict:
    """Fraction of unflagged rows with a NaN flux error in a band with a finite flux.

    Parameters
    ----------
    table : `astropy.table.Table`
        Object (or matched) table.
    model : `str`
        Model whose ``{band}_{model}Flux(Err)`` and summary flag are used.
    bands : sequence of `str`
        Bands (those without columns are skipped).

    Returns
    -------
    metric : `dict`
        ``n_unflagged``, ``n_nan`` (rows with any such NaN error), ``fraction`` and ``per_band``
        (``{band: n_nan}``). Rows outside the object table (reference-only rows of a matched table) are
        not counted.
    """
    rows = ~_column(table, summary_flag_column(model), True).astype(bool)
    if "match_hasObject" in table.colnames:
        rows &= _column(table, "match_hasObject", False).astype(bool)
    any_nan = np.zeros(len(table), bool)
    per_band = {}
    for b in bands:
        if flux_column(model, b) not in table.colnames:
            continue
        flux = _column(table, flux_column(model, b)).astype(float)
        err = _column(table, error_column(flux_column(model, b))).astype(float)
        nan = rows & np.isfinite(flux) & ~np.isfinite(err)
        per_band[b] = int(nan.sum())
        any_nan |= nan
    n = int(rows.sum())
    return {"n_unflagged": n, "n_nan": int(any_nan.sum()),
            "fraction": float(any_nan.sum() / n) if n else None, "per_band": per_band}


CHI_SNR_EDGES = (10.0, 30.0, 100.0, np.inf)
"""S/N bins of ``fluxChiSnr`` (a chi spread that grows with S/N is a systematic floor, not the errors)."""


def _chi_stats(chi: np.ndarray) -> dict[str, float | int | None]:
    med = float(np.median(chi)) if chi.size else float("nan")
    smad = sigma_mad(chi)
    return {"count": int(chi.size), "median": med if np.isfinite(med) else None,
            "sigma_mad": smad if np.isfinite(smad) else None}


def _snr_chi(cols: _Columns, band: str, sel: np.ndarray) -> dict:
    """Flux chi of the isolated rows of ``sel`` with measured S/N >= `CHI_MIN_SNR`.

    ``count``, ``median``, ``sigma_mad`` over all of them, and ``bins``: the same per S/N bin of
    `CHI_SNR_EDGES` (``snr_lo``, ``snr_hi``).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = cols.flux[band] / cols.flux_err[band]
    _, chi = _flux_chi(cols, band)
    use = sel & cols.isolated & (snr >= CHI_MIN_SNR) & np.isfinite(chi)
    out = _chi_stats(chi[use])
    out["bins"] = []
    for lo, hi in itertools.pairwise(CHI_SNR_EDGES):
        b = _chi_stats(chi[use & (snr >= lo) & (snr < hi)])
        out["bins"].append({"snr_lo": float(lo), "snr_hi": None if np.isinf(hi) else float(hi), **b})
    return out


def _fractions(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def compute_metrics(table: Table, spec: MatchedSpec) -> dict:
    """Compute the metrics of a matched table.

    Parameters
    ----------
    table : `astropy.table.Table`
        Matched table.
    spec : `MatchedSpec`
        What to measure.

    Returns
    -------
    metrics : `dict`
        Plain-Python nested dict (YAML-serialisable): ``model``, ``selection``, counts, and per class
        (``galaxies``, ``stars``) ``magDiff`` and ``fluxChi`` per band, ``colorDiff`` per colour and
        ``positionDiff`` (``ra_mas``, ``dec_mas``) as binned statistics (``bin_lo``, ``bin_hi``, ``count``,
        ``median``, ``sigma_mad``); ``completeness`` per class and ``purity`` (all objects) per bin of
        ``selection_band`` magnitude; ``summary``: one-number statistics for references in
        ``[summary_min, summary_max)`` of the band's own magnitude (``magDiff``, ``fluxChi``) or of the
        ``selection_band`` magnitude (``magDiffSelection``: every band's magnitude difference for one
        set of objects, e.g. galaxies with 20 <= r < 24; colours and positions), and ``fluxChiSnr`` per
        band: the chi of the isolated rows (``parentObjectId`` 0 and a reference isolated among the
        references: `ref_blendedness` below ``spec.max_ref_blendedness``) with measured S/N >=
        `CHI_MIN_SNR` (any magnitude), also per S/N bin; ``nanFluxErr``: the
        NaN-error count and fraction of the unflagged object rows (`nan_error_fraction`).
    """
    cols = matched_columns(table, spec)
    edges = spec.edges
    classes = _classes(cols)
    sb = spec.selection_band
    lo, hi = spec.summary_min, spec.summary_max
    out: dict = {
        "model": spec.model,
        "selection": cols.selection,
        "bands": list(cols.bands),
        "summary_range": [lo, hi],
        "selection_band": sb,
        "n_ref": int(cols.has_ref.sum()),
        "n_object": int((cols.has_obj & cols.primary).sum()),
        "n_matched": int((cols.has_ref & cols.has_obj).sum()),
        "n_good": int(cols.good.sum()),
        "magDiff": {},
        "fluxChi": {},
        "colorDiff": {},
        "positionDiff": {},
        "completeness": {},
        "summary": {},
    }
    dra, ddec = _position_diff(table, spec)
    for label, sel in classes.items():
        out["magDiff"][label] = {}
        out["fluxChi"][label] = {}
        out["colorDiff"][label] = {}
        summary: dict = {"magDiff": {}, "magDiffSelection": {}, "fluxChi": {}, "fluxChiSnr": {}, "colorDiff": {}}
        sel_mag = flux_to_mag(cols.ref_flux[sb]) if sb in cols.bands else None
        for b in cols.bands:
            x, y = _mag_diff(cols, b)
            out["magDiff"][label][b] = binned_stats(x[sel], y[sel], edges).to_dict()
            summary["magDiff"][b] = _summary(x[sel], y[sel], lo, hi)
            if sel_mag is not None:
                summary["magDiffSelection"][b] = _summary(sel_mag[sel], y[sel], lo, hi)
            x, y = _flux_chi(cols, b)
            out["fluxChi"][label][b] = binned_stats(x[sel], y[sel], edges).to_dict()
            summary["fluxChi"][b] = _summary(x[sel], y[sel], lo, hi)
            summary["fluxChiSnr"][b] = _snr_chi(cols, b, sel)
        for b1, b2 in COLORS:
            if b1 in cols.bands and b2 in cols.bands and sb in cols.bands:
                x, y = _color_diff(cols, b1, b2, sb)
                out["colorDiff"][label][f"{b1}-{b2}"] = binned_stats(x[sel], y[sel], edges).to_dict()
                summary["colorDiff"][f"{b1}-{b2}"] = _summary(x[sel], y[sel], lo, hi)
        if sb in cols.bands:
            x = flux_to_mag(cols.ref_flux[sb])
            out["positionDiff"][label] = {
                "ra_mas": binned_stats(x[sel], dra[sel], edges).to_dict(),
                "dec_mas": binned_stats(x[sel], ddec[sel], edges).to_dict(),
            }
            summary["positionDiff"] = {
                "ra_mas": _summary(x[sel], dra[sel], lo, hi),
                "dec_mas": _summary(x[sel], ddec[sel], lo, hi),
            }
            cp = _completeness(cols, x, label, edges)
            out["completeness"][label] = {
                "n_ref": [int(v) for v in cp["n_ref"]],
                "n_matched": [int(v) for v in cp["n_ref_matched"]],
                "fraction": _fractions(cp["completeness"]),
            }
        out["summary"][label] = summary
    if sb in cols.bands:
        cp = _purity(cols, flux_to_mag(cols.flux[sb]), edges)
        out["purity"] = {
            "n_object": [int(v) for v in cp["n_target"]],
            "n_matched": [int(v) for v in cp["n_target_matched"]],
            "fraction": _fractions(cp["purity"]),
        }
    out["nanFluxErr"] = nan_error_fraction(table, spec.model, cols.bands)
    out["bin_lo"] = [float(v) for v in edges[:-1]]
    out["bin_hi"] = [float(v) for v in edges[1:]]
    return out


def _chi_note(cols: _Columns, band: str, sel: np.ndarray) -> str:
    _, chi = _flux_chi(cols, band)
    finite = np.isfinite(chi[sel])
    n_bad = int((~finite).sum())
    allc = chi[sel][finite]
    med = float(np.median(allc)) if allc.size else float("nan")
    hi = _snr_chi(cols, band, sel)
    note = f"all: N={allc.size} median={med:.2f} sigma_MAD={sigma_mad(allc):.2f}"
    if n_bad:
        note += f" (+{n_bad} non-finite)"
    fmt = "{:.2f}".format
    note += (f"\nisolated, S/N>={CHI_MIN_SNR:g}: N={hi['count']} median={fmt(hi['median'] or np.nan)} "
             f"sigma_MAD={fmt(hi['sigma_mad'] or np.nan)}")
    return note


def _title(spec: MatchedSpec, cols: _Columns, what: str) -> str:
    return f"galmix {spec.model}: {what}\nselection: {cols.selection}"


def make_plots(table: Table, spec: MatchedSpec) -> dict[str, Figure]:
    """Make the matched-catalogue plots.

    Parameters
    ----------
    table : `astropy.table.Table`
        Matched table.
    spec : `MatchedSpec`
        What to plot.

    Returns
    -------
    figures : `dict` [`str`, `matplotlib.figure.Figure`]
        ``matchedRefMagDiff_<band>``, ``matchedRefMagChi_<band>``, ``matchedRefColorDiff_<b1><b2>``,
        ``matchedRefPositionDiff``, ``sizeMagnitude``, ``completenessPurity``; names whose columns are
        absent are omitted (see `plot_names`).
    """
    cols = matched_columns(table, spec)
    edges = spec.edges
    classes = _classes(cols)
    sb = spec.selection_band
    figs: dict[str, Figure] = {}
    for b in cols.bands:
        x, y = _mag_diff(cols, b)
        figs[f"matchedRefMagDiff_{b}"] = plot_binned_panels(
            [PanelData(k, x[s], 1000 * y[s]) for k, s in classes.items()],
            edges,
            f"reference {b} mag",
            f"{b}: {spec.model} - reference (mmag)",
            _title(spec, cols, f"{b}-band magnitude difference"),
            ylim=(-300, 300),
        )
        x, y = _flux_chi(cols, b)
        # Every unflagged row is drawn (points beyond the y range at its edge) and counted; the panel
        # titles give N, the median and sigma_MAD of all of them and of those at S/N >= CHI_MIN_SNR.
        figs[f"matchedRefMagChi_{b}"] = plot_binned_panels(
            [PanelData(k, x[s], y[s]) for k, s in classes.items()],
            edges,
            f"reference {b} mag",
            f"{b}: ({spec.model} - reference) / error",
            _title(spec, cols, f"{b}-band flux chi"),
            ylim=(-10, 10),
            clip=True,
            notes=[_chi_note(cols, b, s) for s in classes.values()],
        )
    if sb in cols.bands:
        for b1, b2 in COLORS:
            if b1 in cols.bands and b2 in cols.bands:
                x, y = _color_diff(cols, b1, b2, sb)
                figs[f"matchedRefColorDiff_{b1}{b2}"] = plot_binned_panels(
                    [PanelData(k, x[s], 1000 * y[s]) for k, s in classes.items()],
                    edges,
                    f"reference {sb} mag",
                    f"({b1}-{b2}): {spec.model} - reference (mmag)",
                    _title(spec, cols, f"{b1}-{b2} colour difference"),
                    ylim=(-300, 300),
                )
        x = flux_to_mag(cols.ref_flux[sb])
        dra, ddec = _position_diff(table, spec)
        gal = classes["galaxies"]
        star = classes["stars"]
        figs["matchedRefPositionDiff"] = plot_binned_panels(
            [
                PanelData("galaxies RA cos(Dec)", x[gal], dra[gal]),
                PanelData("galaxies Dec", x[gal], ddec[gal]),
                PanelData("stars RA cos(Dec)", x[star], dra[star]),
                PanelData("stars Dec", x[star], ddec[star]),
            ],
            edges,
            f"reference {sb} mag",
            "measured - reference (mas)",
            _title(spec, cols, "position difference"),
            ylim=(-200, 200),
        )
        # Multi-component models have per-component sizes only: show the one whose column sorts first.
        model = get_model(spec.model)
        sizes = sorted(param_column(model, "reff", c) for c in model.components if c.has_shape)
        reff = next((c for c in sizes if c in table.colnames), None)
        if reff is not None:
            size = _column(table, reff).astype(float)
            meas = flux_to_mag(cols.flux[sb])
            figs["sizeMagnitude"] = plot_size_magnitude(
                [PanelData(k, meas[s], size[s]) for k, s in classes.items()],
                edges,
                f"{spec.model} {sb} mag",
                f"{reff} (arcsec)",
                _title(spec, cols, "size-magnitude (class from reference)"),
            )
        completeness = {label: _completeness(cols, x, label, edges) for label in ("galaxies", "stars")}
        purity = _purity(cols, flux_to_mag(cols.flux[sb]), edges)
        figs["completenessPurity"] = plot_completeness_purity(
            edges, completeness, purity,
            f"galmix {spec.model}: completeness (references, {sb} mag) and purity (primary objects)",
        )
    return figs


def plot_names(bands: Sequence[str], has_size: bool = True) -> list[str]:
    """Names `make_plots` produces when every band has columns.

    Parameters
    ----------
    bands : `~collections.abc.Sequence` [`str`]
        Bands analysed; must include the selection band for the tract-wide plots.
    has_size : `bool`
        Whether the model has a size (not the point-source model).

    Returns
    -------
    names : `list` [`str`]
        Plot names.
    """
    names = [f"matchedRefMagDiff_{b}" for b in bands] + [f"matchedRefMagChi_{b}" for b in bands]
    names += [f"matchedRefColorDiff_{b1}{b2}" for b1, b2 in COLORS if b1 in bands and b2 in bands]
    names += ["matchedRefPositionDiff", "completenessPurity"]
    if has_size:
        names.append("sizeMagnitude")
    return names

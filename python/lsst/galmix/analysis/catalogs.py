"""Table operations of the tract-level steps: consolidation of patch tables and matched tables.

The column names written here are listed in doc/conventions.rst ("Tract and matched tables").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import astropy.units as u
import numpy as np
from astropy.table import Column, Table, vstack
from scipy.spatial import cKDTree

from ..models.definitions import get_model
from ..schema import (
    EXTENDEDNESS_RATIO,
    REF_BANDS,
    error_column,
    flux_column,
    param_column,
    reference_column,
    summary_flag_column,
    tract_columns,
)
from .matching import MatchResult, chord_length, sky_to_unit

__all__ = [
    "COMMON_OBJECT_COLUMNS",
    "add_identity_columns",
    "build_matched_table",
    "column_values",
    "consolidate_models",
    "in_bounding_box",
    "in_primary_area",
    "match_tables",
    "pixel_scale_arcsec",
    "reference_band",
    "resolve_duplicates",
]

COMMON_OBJECT_COLUMNS = ("objectId", "parentObjectId", "patch", "detect_isPrimary", "detect_isPatchInner")
"""Columns shared by every model's patch table; kept once in the tract table."""


def column_values(table: Table, name: str, fill=np.nan, required: bool = True) -> np.ndarray:
    """A column as a plain array, masked entries replaced by ``fill``.

    Parameters
    ----------
    table : `astropy.table.Table`
        The table.
    name : `str`
        Column name.
    fill : scalar
        Value of masked entries, and of every row when the column is absent and not ``required``.
    required : `bool`
        Whether an absent column is an error (`KeyError`) rather than all ``fill``.
    """
    if name not in table.colnames and not required:
        return np.full(len(table), fill)
    column = table[name]
    return np.asarray(column.filled(fill) if hasattr(column, "filled") else column)


def _fill_value(dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    if dtype.kind in "US":
        return ""
    raise TypeError(f"No fill value for dtype {dtype}")


def _take(col: Column, idx: np.ndarray, name: str | None = None) -> Column:
    """Rows ``idx`` of a column, with a type-appropriate fill where ``idx < 0``."""
    data = np.asarray(col)
    if hasattr(col, "mask") and np.any(col.mask):
        data = np.asarray(col.filled(_fill_value(data.dtype)))
    dtype = data.dtype
    if dtype.kind == "u":
        dtype = np.dtype("i8")
    out = np.full((len(idx),) + data.shape[1:], _fill_value(dtype), dtype=dtype)
    ok = idx >= 0
    out[ok] = data[idx[ok]]
    return Column(out, name=name or col.name, unit=col.unit, description=col.description)


def consolidate_models(per_model: Mapping[str, Sequence[Table]]) -> Table:
    """Stack the patch tables of each model and join the models on ``objectId``.

    Parameters
    ----------
    per_model : `~collections.abc.Mapping` [`str`, `~collections.abc.Sequence` [`astropy.table.Table`]]
        Model name -> its patch tables (each with ``objectId`` and the common columns).

    Returns
    -------
    table : `astropy.table.Table`
        One row per object of the first model, sorted by ``objectId``; common columns once, then each
        model's own columns. Objects missing from a later model get that model's fill values
        (NaN, -1, False) and ``<model>_flag`` True.

    Raises
    ------
    ValueError
        If no model is given or a model's ``objectId`` values are not unique.
    """
    if not per_model:
        raise ValueError("No model tables to consolidate")
    result: Table | None = None
    for model, tables in per_model.items():
        if not tables:
            raise ValueError(f"Model {model!r} has no patch tables")
        stacked = vstack(list(tables), join_type="exact", metadata_conflicts="silent")
        stacked.meta.clear()
        ids = np.asarray(stacked["objectId"])
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"Model {model!r}: objectId values repeat across patch tables")
        stacked = stacked[np.argsort(ids, kind="stable")]
        if result is None:
            result = stacked
            continue
        base_ids = np.asarray(result["objectId"])
        sorted_ids = np.asarray(stacked["objectId"])
        pos = np.clip(np.searchsorted(sorted_ids, base_ids), 0, max(len(sorted_ids) - 1, 0))
        found = sorted_ids[pos] == base_ids if len(sorted_ids) else np.zeros(len(base_ids), dtype=bool)
        idx = np.where(found, pos, -1)
        for name in stacked.colnames:
            if name in COMMON_OBJECT_COLUMNS or name in result.colnames:
                continue
            result.add_column(_take(stacked[name], idx))
        flag = summary_flag_column(model)
        if flag in result.colnames:
            result[flag][~found] = True
    assert result is not None
    return result


def _bands_of(table: Table, model: str) -> list[str]:
    """Bands with a total-flux column of ``model`` (``{band}_{model}Flux``), in table order."""
    suffix = flux_column(model, "@").removeprefix("@")
    return [c.removesuffix(suffix) for c in table.colnames
            if c.endswith(suffix) and "_" not in c.removesuffix(suffix)]


def reference_band(table: Table, model: str, priority: Sequence[str] = REF_BANDS,
                   min_snr: float = 5.0) -> np.ndarray:
    """Per row, the reference band: the first band of ``priority`` in which ``model``'s flux has
    S/N >= ``min_snr``, else the band of highest S/N, else the first band with a flux column.

    Parameters
    ----------
    table : `astropy.table.Table`
        Table with ``{band}_{model}Flux(Err)`` columns.
    model : `str`
        Reference model.
    priority : sequence of `str`
        Band priority.
    min_snr : `float`
        S/N a band needs to be chosen by priority.

    Returns
    -------
    bands : `numpy.ndarray`
        One-character band names (``""`` when the model has no flux column).
    """
    present = _bands_of(table, model)
    ordered = [b for b in priority if b in present] + [b for b in present if b not in priority]
    out = np.full(len(table), ordered[0] if ordered else "", dtype="U1")
    if not ordered:
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.column_stack([
            np.asarray(table[flux_column(model, b)], float) / np.asarray(table[error_column(flux_column(model, b))], float)
            for b in ordered
        ])
    snr = np.where(np.isfinite(snr), snr, -np.inf)
    ok = snr >= min_snr
    first_ok = np.argmax(ok, axis=1)
    best = np.argmax(snr, axis=1)
    choice = np.where(ok.any(axis=1), first_ok, np.where(np.isfinite(snr).any(axis=1), best, 0))
    return np.array(ordered, dtype="U1")[choice]


def add_identity_columns(table: Table, models: Sequence[str], tract: int) -> Table:
    """Rubin's identity and reference columns first, then the table's own columns.

    ``coord_ra/dec`` are the first model's centroid (the next model's where it is NaN), ``refBand``
    comes from the first extended model's fluxes (`reference_band`), and ``refExtendedness`` compares its
    flux in the reference band with the point-source fit's (``{band}_psfFlux``; NaN without that fit).

    Parameters
    ----------
    table : `astropy.table.Table`
        Consolidated table (`consolidate_models`) with ``isPrimary``.
    models : sequence of `str`
        Consolidated models, the first one giving the coordinates.
    tract : `int`
        Tract ID.

    Returns
    -------
    table : `astropy.table.Table`
        The columns of `lsst.galmix.schema.tract_columns` first, then the others.
    """
    n = len(table)
    ra, dec = np.full(n, np.nan), np.full(n, np.nan)
    for m in models:
        if param_column(m, "ra") in table.colnames:
            fill = ~np.isfinite(ra)
            ra[fill] = np.asarray(table[param_column(m, "ra")], float)[fill]
            dec[fill] = np.asarray(table[param_column(m, "dec")], float)[fill]
    extended = [m for m in models if get_model(m).has_shape]
    ref_model = extended[0] if extended else models[0]
    ref_band = reference_band(table, ref_model)
    ext = np.full(n, np.nan)
    if "point" in models and ref_model != "point":
        for b in np.unique(ref_band):
            rows = ref_band == b
            psf_col, ref_col = flux_column("point", b), flux_column(ref_model, b)
            if not b or psf_col not in table.colnames or ref_col not in table.colnames:
                continue
            psf, ref = np.asarray(table[psf_col], float)[rows], np.asarray(table[ref_col], float)[rows]
            with np.errstate(invalid="ignore"):
                ext[rows] = np.where(np.isfinite(psf) & np.isfinite(ref),
                                     (psf < EXTENDEDNESS_RATIO * ref).astype(float), np.nan)
    values = {
        "coord_ra": ra, "coord_dec": dec, "tract": np.full(n, tract, dtype=np.int64),
        "refBand": ref_band, "refExtendedness": ext,
    }
    cols = []
    for c in tract_columns([]):
        data = values[c.name] if c.name in values else np.asarray(table[c.name])
        cols.append(Column(np.asarray(data).astype(c.dtype), name=c.name, unit=c.unit, description=c.description))
    first = {c.name for c in cols}
    out = Table(cols + [table[c] for c in table.colnames if c not in first], copy=False)
    out.meta.update(table.meta)
    return out


def resolve_duplicates(
    table: Table,
    ra_col: str,
    dec_col: str,
    radius: float,
    npix_col: str | None = None,
) -> np.ndarray:
    """Primary flags with duplicates across patch overlaps removed.

    An object is primary when detection marked it so (``detect_isPrimary``) and no other primary
    object of a different patch lies within ``radius`` that is preferred to it. Of such a pair the one
    with ``detect_isPatchInner`` wins, then the one with more fitted pixels (less cut by the patch
    edge), then the lower ``objectId``.

    Parameters
    ----------
    table : `astropy.table.Table`
        Consolidated table with ``objectId``, ``patch``, ``detect_isPrimary`` and coordinates.
    ra_col, dec_col : `str`
        Coordinate columns (deg) used to find duplicates.
    radius : `float`
        Duplicate radius in arcsec.
    npix_col : `str`, optional
        Column with the number of fitted pixels, the second tie-breaker.

    Returns
    -------
    is_primary : `numpy.ndarray`
        Boolean array, one entry per row.
    """
    primary = np.asarray(table["detect_isPrimary"], dtype=bool).copy()
    ra = np.asarray(table[ra_col], dtype=float)
    dec = np.asarray(table[dec_col], dtype=float)
    usable = primary & np.isfinite(ra) & np.isfinite(dec)
    rows = np.flatnonzero(usable)
    if len(rows) < 2:
        return primary
    tree = cKDTree(sky_to_unit(ra[rows], dec[rows]))
    pairs = tree.query_pairs(chord_length(radius), output_type="ndarray")
    if len(pairs) == 0:
        return primary
    patch = np.asarray(table["patch"])
    inner = (
        np.asarray(table["detect_isPatchInner"], dtype=bool)
        if "detect_isPatchInner" in table.colnames
        else np.zeros(len(table), dtype=bool)
    )
    npix = (
        np.nan_to_num(np.asarray(table[npix_col], dtype=float), nan=-1.0)
        if npix_col and npix_col in table.colnames
        else np.zeros(len(table))
    )
    ids = np.asarray(table["objectId"])
    for a, b in rows[pairs]:
        if patch[a] == patch[b] or not (primary[a] and primary[b]):
            continue
        key_a = (inner[a], npix[a], -ids[a])
        key_b = (inner[b], npix[b], -ids[b])
        primary[b if key_a >= key_b else a] = False
    return primary


def match_tables(result: MatchResult) -> tuple[Table, Table]:
    """Turn a `MatchResult` into the reference-side and target-side match tables.

    Parameters
    ----------
    result : `MatchResult`
        Output of `lsst.galmix.analysis.matching.match_probabilistic`.

    Returns
    -------
    ref_table, target_table : `astropy.table.Table`
        Row-aligned with the reference and target catalogues. Reference side: ``match_candidate``,
        ``match_row``, ``match_count``, ``match_chisq``, ``match_n_chisq_finite``, ``match_distance``;
        target side: ``match_candidate``, ``match_row``.
    """
    ref = Table()
    ref["match_candidate"] = Column(result.ref_candidate, description="Reference took part in matching")
    ref["match_row"] = Column(result.ref_to_target, description="Row of the matched object, -1 if none")
    ref["match_count"] = Column(
        result.ref_count, description="Unmatched candidates within the radius when this reference matched"
    )
    ref["match_chisq"] = Column(result.ref_chisq, description="Chi-square (position and fluxes) of the match")
    ref["match_n_chisq_finite"] = Column(
        result.ref_n_finite, description="Number of finite terms in match_chisq"
    )
    ref["match_distance"] = Column(
        result.distance, unit=u.arcsec, description="Angular distance to the matched object"
    )
    target = Table()
    target["match_candidate"] = Column(result.target_candidate, description="Object took part in matching")
    target["match_row"] = Column(result.target_to_ref, description="Row of the matched reference, -1 if none")
    return ref, target


def build_matched_table(ref: Table, target: Table, ref_match: Table, target_match: Table) -> Table:
    """Join a reference catalogue and an object table through their match tables.

    Parameters
    ----------
    ref, target : `astropy.table.Table`
        Reference catalogue and object table.
    ref_match, target_match : `astropy.table.Table`
        Their match tables (from `match_tables`), row-aligned with them.

    Returns
    -------
    matched : `astropy.table.Table`
        Matched pairs, then unmatched reference candidates, then unmatched object candidates. Object
        columns keep their names, reference columns are prefixed with ``refcat_``; missing sides are
        filled (NaN, -1, False). Added: ``match_distance`` (arcsec), ``match_chisq``,
        ``match_hasRef``, ``match_hasObject``.

    Raises
    ------
    ValueError
        If a match table is not row-aligned with its catalogue.
    """
    if len(ref_match) != len(ref) or len(target_match) != len(target):
        raise ValueError(
            f"Match tables ({len(ref_match)}, {len(target_match)} rows) are not aligned with the "
            f"catalogues ({len(ref)}, {len(target)} rows)"
        )
    r_row = np.asarray(ref_match["match_row"], dtype=np.int64)
    r_cand = np.asarray(ref_match["match_candidate"], dtype=bool)
    t_row = np.asarray(target_match["match_row"], dtype=np.int64)
    t_cand = np.asarray(target_match["match_candidate"], dtype=bool)
    matched_refs = np.flatnonzero(r_row >= 0)
    lonely_refs = np.flatnonzero(r_cand & (r_row < 0))
    lonely_targets = np.flatnonzero(t_cand & (t_row < 0))
    ref_idx = np.concatenate([matched_refs, lonely_refs, np.full(len(lonely_targets), -1)]).astype(np.int64)
    tgt_idx = np.concatenate(
        [r_row[matched_refs], np.full(len(lonely_refs), -1), lonely_targets]
    ).astype(np.int64)

    out = Table()
    for name in target.colnames:
        out.add_column(_take(target[name], tgt_idx))
    for name in ref.colnames:
        out.add_column(_take(ref[name], ref_idx, name=reference_column(name)))
    out.add_column(_take(ref_match["match_distance"], ref_idx))
    out.add_column(_take(ref_match["match_chisq"], ref_idx))
    out["match_hasRef"] = Column(ref_idx >= 0, description="Row has a reference entry")
    out["match_hasObject"] = Column(tgt_idx >= 0, description="Row has a measured object")
    return out


def pixel_scale_arcsec(x: np.ndarray, y: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> float:
    """Mean pixel scale of a table from an affine fit of sky to pixel coordinates.

    Parameters
    ----------
    x, y : `numpy.ndarray`
        Pixel coordinates.
    ra, dec : `numpy.ndarray`
        Sky coordinates (deg) of the same points.

    Returns
    -------
    scale : `float`
        ``sqrt(|det J|)`` in arcsec per pixel, NaN with fewer than 3 usable, non-collinear points.
    """
    x, y, ra, dec = (np.asarray(v, dtype=float) for v in (x, y, ra, dec))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(ra) & np.isfinite(dec)
    if ok.sum() < 3:
        return float("nan")
    dec0 = np.median(dec[ok])
    ra0 = np.median(ra[ok])
    east = ((ra[ok] - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(dec0)) * 3600.0
    north = (dec[ok] - dec0) * 3600.0
    design = np.column_stack([x[ok], y[ok], np.ones(ok.sum())])
    coef, _, rank, _ = np.linalg.lstsq(design, np.column_stack([east, north]), rcond=None)
    if rank < 3:
        return float("nan")
    return float(np.sqrt(abs(np.linalg.det(coef[:2, :2]))))


def in_bounding_box(
    ra: np.ndarray, dec: np.ndarray, box_ra: np.ndarray, box_dec: np.ndarray, margin: float = 0.0
) -> np.ndarray:
    """Whether points lie in the RA/Dec bounding box of other points.

    Parameters
    ----------
    ra, dec : `numpy.ndarray`
        Points to test (deg).
    box_ra, box_dec : `numpy.ndarray`
        Points defining the box (deg); non-finite values are ignored. RA wraps around the box's circular mean.
    margin : `float`
        Growth of the box on every side (arcsec).

    Returns
    -------
    inside : `numpy.ndarray`
        Boolean array; all False when no box point is finite.
    """
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    box_ra, box_dec = np.asarray(box_ra, dtype=float), np.asarray(box_dec, dtype=float)
    ok = np.isfinite(box_ra) & np.isfinite(box_dec)
    if not ok.any():
        return np.zeros(len(ra), dtype=bool)
    rad = np.deg2rad(box_ra[ok])
    ra0 = float(np.rad2deg(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))
    d_box = (box_ra[ok] - ra0 + 180.0) % 360.0 - 180.0
    d = (ra - ra0 + 180.0) % 360.0 - 180.0
    m_dec = margin / 3600.0
    m_ra = m_dec / max(np.cos(np.deg2rad(np.median(box_dec[ok]))), 1e-6)
    with np.errstate(invalid="ignore"):
        return (
            (d >= d_box.min() - m_ra)
            & (d <= d_box.max() + m_ra)
            & (dec >= box_dec[ok].min() - m_dec)
            & (dec <= box_dec[ok].max() + m_dec)
        )


def in_primary_area(
    ra: np.ndarray,
    dec: np.ndarray,
    obj_ra: np.ndarray,
    obj_dec: np.ndarray,
    obj_primary: np.ndarray,
    radius: float = 2.0,
) -> np.ndarray:
    """Whether points lie where detected objects are primary.

    A point is outside the primary area when objects lie within ``radius`` of it and none of them is
    primary (patch borders not owned by the patch, the tract's outer border), or when it lies outside
    the RA/Dec bounding box of the primary objects grown by ``radius``. Points with no object nearby
    inside the box (undetected sources) are inside.

    Parameters
    ----------
    ra, dec : `numpy.ndarray`
        Points (deg).
    obj_ra, obj_dec : `numpy.ndarray`
        All objects (deg); non-finite rows are ignored.
    obj_primary : `numpy.ndarray`
        Primary flag of each object.
    radius : `float`
        Neighbourhood radius (arcsec).

    Returns
    -------
    inside : `numpy.ndarray`
        Boolean array.
    """
    obj_ra, obj_dec = np.asarray(obj_ra, dtype=float), np.asarray(obj_dec, dtype=float)
    primary = np.asarray(obj_primary, dtype=bool)
    ok = np.isfinite(obj_ra) & np.isfinite(obj_dec)
    inside = in_bounding_box(ra, dec, obj_ra[ok & primary], obj_dec[ok & primary], margin=radius)
    if not ok.any():
        return inside
    tree = cKDTree(sky_to_unit(obj_ra[ok], obj_dec[ok]))
    prim_ok = primary[ok]
    pts = sky_to_unit(ra, dec)
    finite = np.all(np.isfinite(pts), axis=1)
    chord = chord_length(radius)
    for i in np.flatnonzero(inside & finite):
        near = tree.query_ball_point(pts[i], chord)
        if near and not prim_ok[near].any():
            inside[i] = False
    return inside

"""`fit_patch`: fit every object of a patch with one model; the entry point of the PipelineTask.

Every input object gets exactly one output row. A failure while fitting one group (an isolated object
or a blend) flags that group's rows (``exception``) and is logged; it never stops the patch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from ..models.definitions import ModelDef, get_model
from ..schema import (
    PASSTHROUGH_COLUMNS,
    FlagSet,
    columns_to_table,
    empty_columns,
    param_column,
    source_columns,
)
from .blend import BandImage, ObjectInput, fit_isolated, fit_joint_blends, fit_objects
from .config import SourceFitConfig
from .plausibility import RESOLVED_RATIO, flag_implausible_rows
from .psf import PsfSpec, psf_at
from .source import PixelToSky, write_flags, write_row

__all__ = ["ImageTriple", "fit_patch"]

_log = logging.getLogger(__name__)

GROUP_LINK_STAMPS = 2.0
"""Without footprints, isolated objects closer than this many ``stamp_min`` are fitted jointly."""

BATCH_OBJECTS = 256
"""Isolated objects per C++ batch (blends: a quarter as many); their prepared pixels are held together."""

ImageTriple = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""``(image, variance, bad)``: nJy image, variance, boolean mask (True = do not use) or None."""


def _catalogue_cov(row, names: Sequence[str]) -> np.ndarray | None:
    if not {"shape_xx", "shape_yy", "shape_xy"} <= set(names):
        return None
    cov = np.array([[row["shape_xx"], row["shape_xy"]], [row["shape_xy"], row["shape_yy"]]], dtype=float)
    if not np.isfinite(cov).all() or cov[0, 0] <= 0 or np.linalg.det(cov) <= 0:
        return None
    return cov


def _sigma(obj: ObjectInput | None) -> float:
    """Observed size sigma (pixels) of an object: its moments, else a PSF-sized default."""
    if obj is None or obj.cov is None:
        return 2.0
    return float(np.sqrt(max(np.linalg.eigvalsh(obj.cov).max(), 0.0)))


def _resolved(obj: ObjectInput | None) -> bool:
    """Whether an object's observed moments are clearly larger than its PSF's."""
    if obj is None or obj.cov is None:
        return False
    psfs = [p for p in obj.psfs if p is not None]
    if not psfs:
        return False
    psf_trace = float(np.mean([np.trace(p.covariance()) for p in psfs]))
    return bool(np.trace(obj.cov) > RESOLVED_RATIO * psf_trace)


def _groups(objects: Table, rows: Sequence[int], link: float = 0.0) -> list[list[int]]:
    """Indices of ``rows`` grouped by blend (isolated objects alone).

    With ``link > 0`` (no footprints say which pixels are whose), isolated objects closer than ``link``
    pixels to each other are fitted as one group, so a faint object's fit models its bright neighbour
    instead of taking its light.
    """
    parent = (np.asarray(objects["parentObjectId"]) if "parentObjectId" in objects.colnames
              else np.zeros(len(objects), int))
    groups: dict[int, list[int]] = {}
    alone: list[int] = []
    for i in rows:
        if parent[i] == 0:
            alone.append(i)
        else:
            groups.setdefault(int(parent[i]), []).append(i)
    out = [[i] for i in alone]
    if link > 0 and len(alone) > 1:
        xy = np.column_stack([np.asarray(objects["x"], float)[alone], np.asarray(objects["y"], float)[alone]])
        root = list(range(len(alone)))

        def find(k: int) -> int:
            while root[k] != k:
                root[k] = root[root[k]]
                k = root[k]
            return k

        for a, b in sorted(cKDTree(xy).query_pairs(link)):
            root[find(a)] = find(b)
        linked: dict[int, list[int]] = {}
        for k, i in enumerate(alone):
            linked.setdefault(find(k), []).append(i)
        out = list(linked.values())
    return out + list(groups.values())


def fit_patch(
    images: Mapping[str, ImageTriple | None],
    origin: tuple[int, int],
    objects: Table,
    footprints: np.ndarray | None,
    psfs: Mapping[str, PsfSpec | None],
    model: str | ModelDef,
    config: SourceFitConfig | None = None,
    pixel_to_sky: PixelToSky | None = None,
    bands: Sequence[str] | None = None,
) -> Table:
    """Fit one model to every object of a patch in all bands.

    Parameters
    ----------
    images : mapping [`str`, ``(image, variance, bad)`` or `None`]
        Per band: image (nJy), variance and boolean mask (True = bad) arrays ``[NY, NX]``; a band mapped
        to `None` is missing (its fluxes are NaN, ``missing_band`` flag).
    origin : `tuple` [`int`, `int`]
        Absolute tract ``(x, y)`` of ``image[0, 0]``.
    objects : `astropy.table.Table`
        ``galmix_objects`` rows: needs ``x``, ``y``; uses ``objectId``, ``parentObjectId``, ``patch``,
        ``detect_isPrimary``, ``footprintLabel`` and ``shape_xx/yy/xy`` when present.
    footprints : `numpy.ndarray` or `None`
        ``galmix_footprints`` label image aligned with the images.
    psfs : mapping [`str`, PSF spec]
        Per band: a `PsfMixture`, a ``galmix_psf_fits`` table, or a callable ``(x, y)`` returning a
        mixture or a kernel image (see `lsst.galmix.fitting.psf.psf_at`).
    model : `str` or `ModelDef`
        Model name (see `lsst.galmix.models.definitions.MODELS`).
    config : `SourceFitConfig`, optional
        Configuration (pixel scale, stamps, blend mode, threads, optimizer settings).
    pixel_to_sky : callable, optional
        ``(x, y) -> (ra, dec)`` degrees (vectorised) for the ``_ra``/``_dec`` columns.
    bands : sequence of `str`, optional
        Output band order (default: the keys of ``images``).

    Returns
    -------
    table : `astropy.table.Table`
        Exactly one row per input object, in input order, with the columns of
        `lsst.galmix.schema.source_columns`. ``meta["galmix_object_seconds"]``: the fits' times
        summed over the objects (set-up, fit and result of each; blends' shares).
    """
    cfg = config or SourceFitConfig()
    m = get_model(model) if isinstance(model, str) else model
    bands = list(bands) if bands is not None else list(images)
    # Rows are written into plain arrays (astropy item assignment is slow) and become a table at the end.
    col_defs = source_columns(m, bands)
    table = empty_columns(col_defs, len(objects))
    for col in PASSTHROUGH_COLUMNS:
        if col.name in objects.colnames:
            table[col.name] = np.asarray(objects[col.name]).astype(col.dtype)
    band_images: list[BandImage | None] = []
    for band in bands:
        triple = images.get(band)
        band_images.append(None if triple is None else BandImage(triple[0], triple[1], triple[2], origin))
    if len(objects) and all(im is None for im in band_images):
        # One line per patch: every object gets ``no_data`` from the normal path below, without errors.
        _log.warning("No band has an image: all %d objects are flagged no_data", len(objects))
    names = objects.colnames
    flags = [FlagSet() for _ in range(len(objects))]
    inputs: dict[int, ObjectInput] = {}

    def build(i: int) -> ObjectInput:
        row = objects[i]
        x, y = float(row["x"]), float(row["y"])
        psf_list = []
        for b, band in enumerate(bands):
            try:
                psf = psf_at(psfs.get(band), x, y, cfg.psf) if band_images[b] is not None else None
            except Exception:  # noqa: BLE001 - a broken PSF source flags the band, not the patch
                _log.warning("PSF for band %s at (%.1f, %.1f) failed", band, x, y, exc_info=True)
                psf = None
            if band_images[b] is not None and psf is None:
                flags[i].set("bad_psf")
            if psf is None or band_images[b] is None:
                flags[i].set("missing_band")
            psf_list.append(psf)
        label = int(row["footprintLabel"]) if "footprintLabel" in names else 0
        inputs[i] = ObjectInput(x, y, _catalogue_cov(row, names), label, psf_list, flags[i])
        return inputs[i]

    # Per-object times go to the table's metadata as a patch total (task metadata), not into the rows:
    # re-runs must give identical tables.
    object_seconds = np.zeros(len(objects))

    def write(i: int, out, seconds: float) -> None:
        object_seconds[i] = seconds if out is None else out.time
        if out is None:
            x, y = float(objects[i]["x"]), float(objects[i]["y"])
            table[param_column(m, "x")][i], table[param_column(m, "y")][i] = x, y
            if pixel_to_sky is not None:
                ra, dec = pixel_to_sky(np.array([x]), np.array([y]))
                table[param_column(m, "ra")][i], table[param_column(m, "dec")][i] = np.ravel(ra)[0], np.ravel(dec)[0]
            write_flags(table, i, m.name, flags[i])
        else:
            write_row(table, i, out, bands, cfg.pixel_scale, pixel_to_sky)

    def failed(group: list[int], seconds: float) -> None:
        ids = [objects[i]["objectId"] if "objectId" in names else i for i in group]
        _log.warning("Fit of objects %s failed", ids, exc_info=True)
        for i in group:
            flags[i].set("exception")
            write(i, None, seconds)

    def run_blend(group: list[int]) -> None:
        t0 = time.perf_counter()
        try:
            outcomes = fit_objects(m, [build(i) for i in group], band_images, footprints, cfg)
            for i, out in zip(group, outcomes):
                write(i, out, (time.perf_counter() - t0) / len(group))
        except Exception:  # noqa: BLE001 - one bad blend must not stop the patch
            failed(group, (time.perf_counter() - t0) / len(group))

    xy = np.column_stack([np.asarray(objects["x"], float), np.asarray(objects["y"], float)]).reshape(-1, 2)
    placed = np.isfinite(xy).all(axis=1)
    if not placed.all():
        # No stamp can be cut without a position: flag these rows and fit the others (blend siblings too).
        ids = [objects[i]["objectId"] if "objectId" in names else i for i in np.flatnonzero(~placed)]
        _log.warning("Objects %s have a non-finite catalogue position (x, y): flagged bad_position, not fitted",
                     ids)
        for j in np.flatnonzero(~placed):
            flags[j].set("bad_position")
            write(int(j), None, 0.0)
    link = GROUP_LINK_STAMPS * cfg.stamp_min if footprints is None else 0.0
    groups = _groups(objects, np.flatnonzero(placed).tolist(), link)
    isolated = [g[0] for g in groups if len(g) == 1]
    t0 = time.perf_counter()
    objs = {}
    for i in isolated:
        try:
            objs[i] = build(i)
        except Exception:  # noqa: BLE001
            failed([i], 0.0)
    keys = list(objs)
    # Batches bound the memory of the prepared pixel data, which grows with the number of objects.
    for chunk in (keys[k:k + BATCH_OBJECTS] for k in range(0, len(keys), BATCH_OBJECTS)):
        try:
            for i, out in zip(chunk, fit_isolated(m, [objs[i] for i in chunk], band_images, footprints, cfg)):
                write(i, out, (time.perf_counter() - t0) / max(len(keys), 1) if out is None else out.time)
        except Exception:  # noqa: BLE001 - the batch itself failed: flag its objects, keep the others
            failed(chunk, (time.perf_counter() - t0) / max(len(keys), 1))
    blends = [g for g in groups if len(g) > 1]
    if cfg.blend_mode == "joint":
        # Blends small enough for a joint fit go to the C++ batch together; the others are fitted
        # child by child below.
        joint = [g for g in blends if len(g) <= cfg.max_children]
        blends = [g for g in blends if len(g) > cfg.max_children]
        t0 = time.perf_counter()
        built = []
        for g in joint:
            try:
                built.append((g, [build(i) for i in g]))
            except Exception:  # noqa: BLE001
                failed(g, 0.0)
        for part in (built[k:k + BATCH_OBJECTS // 4] for k in range(0, len(built), BATCH_OBJECTS // 4)):
            try:
                results = fit_joint_blends(m, [objs_ for _, objs_ in part], band_images, footprints, cfg)
                for (g, _), outcomes in zip(part, results):
                    if outcomes is None:
                        for i in g:
                            write(i, None, 0.0)
                        continue
                    for i, out in zip(g, outcomes):
                        write(i, out, (time.perf_counter() - t0) / max(len(joint), 1) if out is None else out.time)
            except Exception:  # noqa: BLE001 - the batch itself failed: flag its objects
                failed([i for g, _ in part for i in g], 0.0)
    if cfg.n_threads > 1 and len(blends) > 1:
        with ThreadPoolExecutor(cfg.n_threads) as pool:
            list(pool.map(run_blend, blends))
    else:
        for g in blends:
            run_blend(g)
    sigmas = np.array([_sigma(inputs.get(i)) for i in range(len(objects))])
    labels = np.array([inputs[i].label if i in inputs else 0 for i in range(len(objects))])
    resolved = np.array([_resolved(inputs.get(i)) for i in range(len(objects))])
    n_bad = flag_implausible_rows(table, m, bands, xy, sigmas, resolved, labels, band_images, footprints,
                                  cfg.settings.reff_bounds[0])
    if n_bad:
        _log.warning("%d of %d fits left their object (centroid_moved, flux_excess or shape_collapsed)",
                     n_bad, len(objects))
    out = columns_to_table(col_defs, table)
    out.meta["galmix_model"] = m.name
    out.meta["galmix_object_seconds"] = float(object_seconds.sum())
    return out

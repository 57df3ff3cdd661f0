"""`fit_patch`: fit every object of a patch with one model; the entry point of the PipelineTask.

A short driver over the stages of `lsst.galmix.fitting.stages`: plan the groups
(`lsst.galmix.fitting.plan`), get each object's inputs, then per batch of groups prepare stamps, solve in
one engine batch and refine (stamp growth, residual sources); blends fitted in blocks with their
neighbours subtracted; finally write one row per object, check the rows' plausibility and write each
row's flags (input, fit and plausibility stages) merged once. Every input object gets exactly one output
row. A failure while fitting one group (an isolated object or a blend) or one batch flags those rows
(``exception``) and is logged; it never stops the patch. The stage times go to a `lsst.galmix.fitting.timing.StageTimer`.

The linear algebra of a patch's fits is on small matrices (Fisher matrices of 10-60 parameters), which
`fit_patch` runs with one BLAS thread: a threaded LAPACK call on them costs far more than it computes
(an ``eigh`` of a 50 x 50 matrix took 70 ms of CPU with OpenBLAS threads on a busy 2-core machine,
0.2 ms with one). The engine's own threads (``n_threads``) are not BLAS threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from astropy.table import Table
from threadpoolctl import threadpool_limits

from ..models.definitions import ModelDef, get_model
from ..schema import PASSTHROUGH_COLUMNS, columns_to_table, empty_columns, flag_bit, source_columns
from .blend import BandImage, ObjectInput
from .config import SourceFitConfig
from .plan import plan_patch
from .plausibility import RESOLVED_RATIO, implausible_flags
from .psf import PsfSpec
from .source import PixelToSky, SourceOutcome, write_flags
from .stages import GroupFit, fit_blocks, fit_groups, object_inputs, write_rows
from .timing import StageTimer, active_timer, stage

__all__ = ["BATCH_OBJECTS", "ImageTriple", "fit_patch"]

_log = logging.getLogger(__name__)

BATCH_OBJECTS = 256
"""Isolated objects per C++ batch (blends: a quarter as many); their prepared pixels are held together."""

ImageTriple = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""``(image, variance, bad)``: nJy image, variance, boolean mask (True = do not use) or None."""


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


def _fit_batches(model: ModelDef, groups: Sequence[list[int]], batch: int, inputs: Mapping[int, ObjectInput],
                 images: Sequence[BandImage | None], footprints: np.ndarray | None, cfg: SourceFitConfig,
                 ids: Sequence) -> list[GroupFit]:
    """Prepare, solve and refine groups fitted as one engine problem each, ``batch`` groups at a time.

    Batches bound the memory of the prepared pixel data; a batch that raises flags its groups.
    """
    out: list[GroupFit] = []
    for k in range(0, len(groups), batch):
        part = groups[k : k + batch]
        try:
            fits = fit_groups(model, part, inputs, images, footprints, cfg)
        except Exception:  # noqa: BLE001 - the batch itself failed: flag its objects, keep the others
            _log.warning("Fit of objects %s failed", [ids[i] for g in part for i in g], exc_info=True)
            fits = [GroupFit.of(g, inputs) for g in part]
            for f in fits:
                for o in f.objs:
                    o.flags.set("exception")
        out += fits
    return out


def _write_table(m: ModelDef, bands: Sequence[str], cfg: SourceFitConfig, objects: Table, xy: np.ndarray,
                 inputs: Mapping[int, ObjectInput], input_mask: np.ndarray, fits: Sequence[GroupFit],
                 images: Sequence[BandImage | None], footprints: np.ndarray | None,
                 pixel_to_sky: PixelToSky | None) -> Table:
    """One row per object (outcome, or catalogue position), its plausibility, then its flags: those of
    the input stage, of its group's fit and of the plausibility checks, merged and written once."""
    n = len(objects)
    outcomes: list[SourceOutcome | None] = [None] * n
    fit_mask = np.zeros(n, dtype=np.int64)
    for f in fits:
        for i, out, mask in zip(f.rows, f.outcomes or [None] * len(f.rows), f.flag_masks()):
            outcomes[i], fit_mask[i] = out, mask
    col_defs = source_columns(m, bands)
    table = empty_columns(col_defs, n)
    for col in PASSTHROUGH_COLUMNS:
        if col.name in objects.colnames:
            table[col.name] = np.asarray(objects[col.name]).astype(col.dtype)
    write_rows(table, m, bands, cfg, xy, outcomes, pixel_to_sky, inputs)
    sigmas = np.array([_sigma(inputs.get(i)) for i in range(n)])
    labels = np.array([inputs[i].label if i in inputs else 0 for i in range(n)])
    resolved = np.array([_resolved(inputs.get(i)) for i in range(n)])
    implausible = implausible_flags(table, m, bands, xy, sigmas, resolved, labels, images, footprints,
                                    cfg.settings.reff_bounds[0])
    n_bad = int(np.count_nonzero(implausible))
    if n_bad:
        _log.warning("%d of %d fits left their object (centroid_moved, flux_excess or shape_collapsed)", n_bad, n)
    write_flags(table, m.name, np.asarray(input_mask, dtype=np.int64) | fit_mask | implausible)
    return columns_to_table(col_defs, table)


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
    timer: StageTimer | None = None,
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
    timer : `StageTimer`, optional
        Timer that receives the stage times (default: the active one, else a new one).

    Returns
    -------
    table : `astropy.table.Table`
        Exactly one row per input object, in input order, with the columns of
        `lsst.galmix.schema.source_columns`. ``meta["galmix_stage_cpu"]`` and
        ``meta["galmix_stage_wall"]``: seconds per stage of this call (`lsst.galmix.fitting.timing`);
        ``meta["galmix_object_seconds"]``: their wall-clock total.
    """
    cfg = config or SourceFitConfig()
    m = get_model(model) if isinstance(model, str) else model
    bands = list(bands) if bands is not None else list(images)
    timer = timer or active_timer() or StageTimer()
    before = timer.snapshot()
    with threadpool_limits(limits=1, user_api="blas"), timer.active(), timer.stage("plan"):
        band_images: list[BandImage | None] = []
        for b in bands:
            triple = images.get(b)
            band_images.append(None if triple is None else BandImage(triple[0], triple[1], triple[2], origin))
        if len(objects) and all(im is None for im in band_images):
            # One line per patch: every object gets ``no_data`` from the normal path, without errors.
            _log.warning("No band has an image: all %d objects are flagged no_data", len(objects))
        ids = (list(np.asarray(objects["objectId"])) if "objectId" in objects.colnames
               else list(range(len(objects))))
        plan = plan_patch(objects, footprints is not None, cfg.blend_mode, cfg.max_children, cfg.stamp_min)
        if plan.unplaced:
            # No stamp can be cut without a position: flag these rows and fit the others (siblings too).
            _log.warning("Objects %s have a non-finite or out-of-range catalogue position (x, y): flagged "
                         "bad_position, not fitted", [ids[i] for i in plan.unplaced])
        placed = [i for g in plan.groups for i in g]
        inputs, input_mask = object_inputs(objects, placed, bands, band_images, psfs, cfg.psf)
        input_mask[plan.unplaced] |= flag_bit("bad_position")
        isolated = [g for g, _ in plan.of_kind("single")]
        joint = [g for g, _ in plan.of_kind("joint")]
        fits = _fit_batches(m, isolated, BATCH_OBJECTS, inputs, band_images, footprints, cfg, ids)
        fits += _fit_batches(m, joint, BATCH_OBJECTS // 4, inputs, band_images, footprints, cfg, ids)
        fits += fit_blocks(m, plan.of_kind("blocks"), inputs, band_images, footprints, cfg)
        with stage("write"):
            out = _write_table(m, bands, cfg, objects, plan.xy, inputs, input_mask, fits, band_images, footprints,
                               pixel_to_sky)
    cpu, wall = timer.since(before)
    out.meta["galmix_model"] = m.name
    out.meta["galmix_stage_cpu"] = cpu
    out.meta["galmix_stage_wall"] = wall
    out.meta["galmix_object_seconds"] = float(sum(wall.values()))
    return out


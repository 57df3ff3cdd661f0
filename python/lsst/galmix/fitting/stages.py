"""The stages of a patch fit, each with one job: object inputs -> prepare stamps -> solve -> refine ->
rows.

`fit_patch` (`lsst.galmix.fitting.patch`) drives them over the groups of a `PatchPlan`. Each stage
records its time under its name in the active `lsst.galmix.fitting.timing.StageTimer`. Flags: each
stage gives its own, and they are merged once per row when the row is written (`write_flags`). The
input stage returns a flag mask per row (PSF problems, missing bands); the preparation of a group sets
its objects' flags (`ObjectInput.flags`: stamp data quality of every stamp the object was prepared on,
refits included, missing bands, failed moments, failures); every fit returns outcomes with flags of
their own (the preparation's and the fit's), so a refit that is not kept leaves the kept fit's as they
were; `GroupFit.flag_masks` joins a group's; the plausibility checks
(`lsst.galmix.fitting.plausibility.implausible_flags`) return theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from astropy.table import Table

from ..models.definitions import ModelDef
from ..schema import FlagSet, error_column, flag_bit, param_column
from .blend import (
    BandImage,
    ObjectInput,
    _grow_stamps,
    _measure,
    _prepare_set,
    _with_residual_sources,
    fit_objects,
)
from .config import PsfFitConfig, SourceFitConfig
from .misfit import add_misfit_errors
from .plan import Route
from .psf import PsfSpec, nearest_psf, psf_at
from .source import (
    PixelToSky,
    Prepared,
    SourceOutcome,
    extra_starts,
    solve,
    write_row,
)
from .timing import stage

__all__ = [
    "GroupFit",
    "fit_blocks",
    "fit_groups",
    "object_inputs",
    "prepare_groups",
    "refine_groups",
    "solve_groups",
    "write_rows",
]

_log = logging.getLogger(__name__)


def object_inputs(
    objects: Table,
    rows: Sequence[int],
    bands: Sequence[str],
    images: Sequence[BandImage | None],
    psfs: Mapping[str, PsfSpec | None],
    psf_config: PsfFitConfig,
) -> tuple[dict[int, ObjectInput], np.ndarray]:
    """Fit inputs of the placed objects (position, catalogue moments, footprint label, PSF per band).

    Returns
    -------
    inputs : `dict` [`int`, `ObjectInput`]
        By row; each with an empty `FlagSet` for the fit's flags.
    mask : `numpy.ndarray`
        Per row (all rows of ``objects``), the flag mask of this stage: ``bad_psf`` (a band has an image
        but no PSF there), ``missing_band`` (a band without image or PSF).
    """
    names = objects.colnames
    xs, ys = np.asarray(objects["x"], float), np.asarray(objects["y"], float)
    labels = (np.asarray(objects["footprintLabel"]).astype(int) if "footprintLabel" in names
              else np.zeros(len(objects), int))
    shape = (np.column_stack([np.asarray(objects[c], float) for c in ("shape_xx", "shape_xy", "shape_yy")])
             if {"shape_xx", "shape_yy", "shape_xy"} <= set(names) else None)
    bad_psf, missing = flag_bit("bad_psf"), flag_bit("missing_band")
    # One lookup per PSF table, shared by the objects (`nearest_psf`).
    psfs = {band: nearest_psf(spec) if isinstance(spec, Table) else spec for band, spec in psfs.items()}
    mask = np.zeros(len(objects), np.int64)
    inputs: dict[int, ObjectInput] = {}
    for i in rows:
        x, y = float(xs[i]), float(ys[i])
        psf_list = []
        for b, band in enumerate(bands):
            psf = None
            if images[b] is not None:
                try:
                    psf = psf_at(psfs.get(band), x, y, psf_config)
                except Exception:  # noqa: BLE001 - a broken PSF source flags the band, not the patch
                    _log.warning("PSF for band %s at (%.1f, %.1f) failed", band, x, y, exc_info=True)
                if psf is None:
                    mask[i] |= bad_psf
            if psf is None:
                mask[i] |= missing
            psf_list.append(psf)
        inputs[i] = ObjectInput(x, y, None if shape is None else _catalogue_cov(shape[i]), int(labels[i]),
                                psf_list, FlagSet())
    return inputs, mask


def _catalogue_cov(xx_xy_yy: np.ndarray) -> np.ndarray | None:
    xx, xy, yy = (float(v) for v in xx_xy_yy)
    if not (np.isfinite(xx) and np.isfinite(xy) and np.isfinite(yy)) or xx <= 0 or xx * yy - xy * xy <= 0:
        return None
    return np.array([[xx, xy], [xy, yy]])


@dataclass
class GroupFit:
    """One group of objects on its way through prepare -> solve -> refine.

    Attributes
    ----------
    rows : `list` [`int`]
        Table rows of the group's objects.
    objs : `list` [`ObjectInput`]
        Their inputs (``flags``: the preparation flags of the objects, and ``exception`` for failures).
    starts : `list` [`Prepared`]
        The prepared fits (starting points) of the group; empty when it has nothing to fit (flags say
        why). Isolated objects of multimodal models have several; the best fit is kept.
    prep : `Prepared` or `None`
        The inputs of the kept fit.
    outcomes : `list` [`SourceOutcome` or `None`] or `None`
        One per object after `solve_groups`, each with the flags of its fit; `None` when the group failed
        (``exception``).
    """

    rows: list[int]
    objs: list[ObjectInput]
    starts: list[Prepared]
    prep: Prepared | None = None
    outcomes: list[SourceOutcome | None] | None = None

    @classmethod
    def of(cls, rows: Sequence[int], inputs: Mapping[int, ObjectInput]) -> GroupFit:
        """The group of table rows ``rows`` with their inputs, before any stage."""
        return cls(list(rows), [inputs[i] for i in rows], [])

    @property
    def failed(self) -> bool:
        """Whether the group raised (its rows get ``exception``)."""
        return self.outcomes is None and "exception" in self.objs[0].flags

    def flag_masks(self) -> list[int]:
        """Per object, the flags of this group's stages: its preparation flags and its fit's."""
        outcomes = self.outcomes or [None] * len(self.objs)
        return [o.flags.mask | (0 if out is None else out.flags.mask) for o, out in zip(self.objs, outcomes)]


def _fail(fit: GroupFit, what: str) -> None:
    _log.warning("%s of the objects at %s failed", what, [(round(o.x, 1), round(o.y, 1)) for o in fit.objs],
                 exc_info=True)
    for o in fit.objs:
        o.flags.set("exception")
    fit.starts, fit.prep, fit.outcomes = [], None, None


def prepare_groups(
    model: ModelDef,
    groups: Sequence[Sequence[int]],
    inputs: Mapping[int, ObjectInput],
    images: Sequence[BandImage | None],
    footprints: np.ndarray | None,
    cfg: SourceFitConfig,
) -> list[GroupFit]:
    """Stamps, moments and starting parameters of groups fitted as one engine problem each.

    A single object whose model is multimodal gets its extra starts (`extra_starts`); a group that
    raises is flagged ``exception`` and logged, the others go on.
    """
    out = []
    with stage("stamps"):
        for rows in groups:
            fit = GroupFit.of(rows, inputs)
            try:
                for o in fit.objs:
                    _measure(o, fit.objs if len(fit.objs) > 1 else [], images, footprints, cfg)
                prep = _prepare_set(model, fit.objs, images, footprints, [o.label for o in fit.objs], cfg)
                if prep is not None:
                    fit.starts.append(prep)
                    if len(fit.objs) == 1:
                        fit.starts += [Prepared(prep.specs, alt, prep.bands, prep.flags)
                                       for alt in extra_starts(model, prep.theta0.copy())]
            except Exception:  # noqa: BLE001 - one bad group must not stop the batch
                _fail(fit, "Preparing the fit")
            out.append(fit)
    return out


def solve_groups(fits: Sequence[GroupFit], cfg: SourceFitConfig) -> None:
    """Run every start of every group in one engine batch and keep each group's best fit.

    The best start is the one without a fatal flag and with the lowest chi-square.
    """
    with stage("solve"):
        done = iter(solve([p for f in fits for p in f.starts], cfg.settings, cfg.n_threads))
        for f in fits:
            results = [next(done) for _ in f.starts]
            if not results:
                if not f.failed:
                    f.outcomes = [None] * len(f.objs)
                continue
            k = min(range(len(results)), key=lambda i: (results[i][0].flags.fatal, results[i][0].chi2
                                                        if np.isfinite(results[i][0].chi2) else np.inf))
            f.prep, f.outcomes = f.starts[k], list(results[k])


def refine_groups(model: ModelDef, fits: Sequence[GroupFit], images: Sequence[BandImage | None],
                  footprints: np.ndarray | None, cfg: SourceFitConfig) -> None:
    """Grow the stamps of fits that do not hold their models (or add a sky), then add residual sources.

    Each step refits in one engine batch and keeps a refit only when it is not worse (see
    `lsst.galmix.fitting.blend._grow_stamps` and `lsst.galmix.fitting.residual_sources`).
    """
    live = [f for f in fits if f.prep is not None and f.outcomes is not None]
    with stage("refine"):
        items = [(f.objs, [o.label for o in f.objs], (), f.prep, f.outcomes) for f in live]
        grown = _grow_stamps(model, cast(Any, items), images, footprints, cfg, cfg.n_threads)
    with stage("residuals"):
        refits = _with_residual_sources(grown, cfg, cfg.n_threads)
    for f, (prep, _), outcomes in zip(live, grown, refits):
        f.prep, f.outcomes = prep, list(outcomes)


def fit_groups(model: ModelDef, groups: Sequence[Sequence[int]], inputs: Mapping[int, ObjectInput],
               images: Sequence[BandImage | None], footprints: np.ndarray | None, cfg: SourceFitConfig
               ) -> list[GroupFit]:
    """Prepare, solve (one engine batch) and refine groups fitted as one engine problem each."""
    fits = prepare_groups(model, groups, inputs, images, footprints, cfg)
    solve_groups(fits, cfg)
    refine_groups(model, fits, images, footprints, cfg)
    return fits


def fit_blocks(
    model: ModelDef,
    groups: Sequence[tuple[Sequence[int], Route]],
    inputs: Mapping[int, ObjectInput],
    images: Sequence[BandImage | None],
    footprints: np.ndarray | None,
    cfg: SourceFitConfig,
) -> list[GroupFit]:
    """Fit blends block by block with their neighbours' models subtracted (`fit_objects`), in parallel
    Python threads when ``cfg.n_threads > 1``; a blend that raises is flagged ``exception``."""

    def run(item: tuple[Sequence[int], Route]) -> GroupFit:
        rows, route = item
        fit = GroupFit.of(rows, inputs)
        try:
            fit.outcomes = list(fit_objects(model, fit.objs, images, footprints, cfg, route))
        except Exception:  # noqa: BLE001 - one bad blend must not stop the patch
            _fail(fit, "Fit")
        return fit

    with stage("blends"):
        if cfg.n_threads > 1 and len(groups) > 1:
            with ThreadPoolExecutor(cfg.n_threads) as pool:
                return list(pool.map(run, groups))
        return [run(g) for g in groups]


def write_rows(
    table: dict[str, np.ndarray],
    model: ModelDef,
    bands: Sequence[str],
    cfg: SourceFitConfig,
    xy: np.ndarray,
    outcomes: Sequence[SourceOutcome | None],
    pixel_to_sky: PixelToSky | None,
    inputs: Mapping[int, ObjectInput],
) -> None:
    """Write the values of one row per object (``outcomes[i]``: row ``i``'s fit, or `None`), the flux
    errors with the model-misfit term (`lsst.galmix.fitting.misfit`, from the PSFs of ``inputs``).

    Rows without an outcome keep the catalogue position; sky coordinates of all rows come from one call of
    ``pixel_to_sky`` (with the local Jacobian for the errors of fitted centres). The flag columns are
    written once, merged, by `lsst.galmix.fitting.source.write_flags`.
    """
    cx, cy = param_column(model, "x"), param_column(model, "y")
    cra, cdec = param_column(model, "ra"), param_column(model, "dec")
    n = len(outcomes)
    xy_cov = np.full((n, 2, 2), np.nan)
    for i, out in enumerate(outcomes):
        if out is None:
            table[cx][i], table[cy][i] = xy[i]
            continue
        obj = inputs.get(i)
        out = add_misfit_errors(out, obj.psfs if obj is not None else None, cfg.misfit_flux_fraction)
        write_row(table, i, out, bands, cfg.pixel_scale, None)
        if model.free_centroid:
            xy_cov[i] = out.theta_cov[:2, :2]
    if pixel_to_sky is None or n == 0:
        return
    x, y = np.asarray(table[cx][:n], float), np.asarray(table[cy][:n], float)
    ra, dec = pixel_to_sky(np.concatenate([x, x + 1.0, x]), np.concatenate([y, y, y + 1.0]))
    ra, dec = np.ravel(ra).astype(float).reshape(3, n), np.ravel(dec).astype(float).reshape(3, n)
    dra = (ra[1:] - ra[0] + 180.0) % 360.0 - 180.0
    jac = np.stack([dra.T, (dec[1:] - dec[0]).T], axis=1)  # (n, 2 sky, 2 pixel)
    with np.errstate(invalid="ignore"):
        var = np.einsum("nij,njk,nik->ni", jac, xy_cov, jac)
    table[cra][:n], table[cdec][:n] = ra[0], dec[0]
    fitted = np.array([out is not None for out in outcomes])
    table[error_column(cra)][fitted] = np.sqrt(var[fitted, 0])
    table[error_column(cdec)][fitted] = np.sqrt(var[fitted, 1])

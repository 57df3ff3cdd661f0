"""Fitting groups of objects: isolated objects, joint blend fits and per-child fits with neighbours
subtracted.

``"joint"`` fits all children of a blend (up to ``max_children``) simultaneously on the union of their
stamps, each with its own model parameters and fluxes. Larger blends are fitted in blocks of
``max_children`` children, and ``"subtract"`` in blocks of one: each block on its own stamps with the
overlapping siblings' current models subtracted, in sweeps until no child changes (`_fit_in_blocks`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from .._galmix import nnls_gram
from ..models.definitions import ModelDef
from ..models.psf_mixture import PsfMixture
from ..schema import FlagSet
from .config import FitSettings, SourceFitConfig
from .engine_backend import band_gaussians, model_stamps
from .moments import adaptive_moments
from .optimize import BandInput, ParameterBounds, SourceSpec, nan_to_num
from .plan import Route, route_group
from .residual_sources import refit_with_residual_sources
from .source import Prepared, SourceOutcome, band_input, extra_starts, initial_theta, solve
from .stamps import Exclusion, Stamp, background_pixels, cut_box, required_half_size, weighted_pixels
from .timing import staged

__all__ = ["BandImage", "ObjectInput", "fit_objects"]

_log = logging.getLogger(__name__)


@dataclass
class BandImage:
    """The full image of one band.

    Attributes
    ----------
    image, variance : `numpy.ndarray`
        ``[NY, NX]`` data (nJy) and variance.
    bad : `numpy.ndarray` of `bool` or `None`
        True = masked.
    origin : `tuple` [`int`, `int`]
        Absolute ``(x, y)`` of ``image[0, 0]``.
    """

    image: np.ndarray
    variance: np.ndarray
    bad: np.ndarray | None
    origin: tuple[int, int]


@dataclass
class ObjectInput:
    """One object to fit.

    Attributes
    ----------
    x, y : `float`
        Absolute position.
    cov : `numpy.ndarray` or `None`
        Observed covariance from a catalogue (pixel^2), or `None` to measure adaptive moments.
    label : `int`
        Footprint label (0: none).
    psfs : `list` [`PsfMixture` or `None`]
        PSF per band at the object.
    flags : `FlagSet`
        Flags collected so far (filled by the fit).
    """

    x: float
    y: float
    cov: np.ndarray | None
    label: int
    psfs: list[PsfMixture | None]
    flags: FlagSet


def _exclude(
    footprints: np.ndarray | None,
    origin: tuple[int, int],
    keep: Sequence[int],
    owners: Sequence[ObjectInput] = (),
    me: ObjectInput | Sequence[ObjectInput] | None = None,
    strict: bool = False,
) -> Exclusion | None:
    """Pixels not to use: owned (footprint label) by objects outside ``keep`` (with ``strict``, also
    unowned pixels), or, without footprints, closer to another of ``owners`` than to ``me`` (a Voronoi
    split of a blend)."""
    keep_set = [k for k in keep if k != 0]
    mine = list(me) if isinstance(me, (list, tuple)) else ([] if me is None else [cast(ObjectInput, me)])
    others = [o for o in owners if all(o is not m for m in mine)]

    def exclusion(x0: int, y0: int, shape: tuple[int, int]) -> np.ndarray | None:
        ex = None
        if footprints is not None:
            lab = footprints[y0 - origin[1] : y0 - origin[1] + shape[0], x0 - origin[0] : x0 - origin[0] + shape[1]]
            ex = ~np.isin(lab, keep_set) if strict else (lab != 0) & ~np.isin(lab, keep_set)
        elif mine and others:
            yy, xx = np.mgrid[y0 : y0 + shape[0], x0 : x0 + shape[1]]
            d_me = np.min([(xx - m.x) ** 2 + (yy - m.y) ** 2 for m in mine], axis=0)
            ex = np.zeros(shape, bool)
            # Only an object nearer to the box than its farthest pixel is from ``mine`` can own a pixel.
            reach = float(d_me.max())
            for o in others:
                dx = max(x0 - o.x, 0.0, o.x - (x0 + shape[1] - 1))
                dy = max(y0 - o.y, 0.0, o.y - (y0 + shape[0] - 1))
                if dx * dx + dy * dy < reach:
                    ex |= (xx - o.x) ** 2 + (yy - o.y) ** 2 < d_me
        return ex

    return exclusion if (footprints is not None or (mine and others)) else None


def _measure_cov(obj: ObjectInput, images: Sequence[BandImage | None], half: int, exclude) -> np.ndarray | None:
    """Observed covariance from adaptive moments in the band with the highest S/N."""
    best, best_sn = None, 0.0
    for im in images:
        if im is None:
            continue
        st = cut_box(im.image, im.variance, im.bad, im.origin,
                     (int(np.floor(obj.x + 0.5)) - half, int(np.floor(obj.y + 0.5)) - half),
                     (int(np.floor(obj.x + 0.5)) + half + 1, int(np.floor(obj.y + 0.5)) + half + 1), exclude)
        if st.n_pix == 0:
            continue
        sn = float((st.image * np.sqrt(st.weight)).sum())
        if sn > best_sn:
            best, best_sn = st, sn
    if best is None:
        return None
    # Only a starting point: 1% convergence is plenty and keeps this numpy step cheap.
    mom = adaptive_moments(best.image, best.weight, best.x0, best.y0, guess=(obj.x, obj.y), fix_centroid=True,
                           rtol=1e-2)
    # An unconverged iteration (slow for high-index profiles) is still a fine starting point.
    cov = mom.cov
    valid = np.isfinite(cov).all() and cov[0, 0] > 0 and np.linalg.det(cov) > 0
    return cov if valid else None


def images_origin(images: Sequence[BandImage | None]) -> tuple[int, int]:
    """The common origin of the band images (at least one must be present)."""
    return next(im.origin for im in images if im is not None)


def _any_image(images: Sequence[BandImage | None]) -> bool:
    return any(im is not None for im in images)


def _half_size(cov: np.ndarray | None, cfg: SourceFitConfig) -> tuple[int, int]:
    """First-stamp half-sizes along x and y: ``stamp_sigmas`` observed sigma along each axis (the box of
    that ellipse), within ``[stamp_min, stamp_max]``."""
    if cov is None:
        return cfg.stamp_min * 2, cfg.stamp_min * 2
    # Clipped before the ceiling (the same for integer limits): an infinite size gives the largest stamp.
    sigmas, lo, hi = cfg.stamp_sigmas, cfg.stamp_min, cfg.stamp_max
    hx, hy = (math.ceil(min(max(sigmas * math.sqrt(max(float(cov[k, k]), 0.0)), lo), hi)) for k in (0, 1))
    return hx, hy


def _stamps(images, start, stop, exclude) -> list[Stamp | None]:
    return [None if im is None else cut_box(im.image, im.variance, im.bad, im.origin, start, stop, exclude)
            for im in images]


def _box(objs: Sequence[ObjectInput], halves: Sequence[tuple[int, int]]
         ) -> tuple[tuple[int, int], tuple[int, int]]:
    x0 = min(math.floor(o.x + 0.5) - hx for o, (hx, _) in zip(objs, halves))
    y0 = min(math.floor(o.y + 0.5) - hy for o, (_, hy) in zip(objs, halves))
    x1 = max(math.floor(o.x + 0.5) + hx + 1 for o, (hx, _) in zip(objs, halves))
    y1 = max(math.floor(o.y + 0.5) + hy + 1 for o, (_, hy) in zip(objs, halves))
    return (x0, y0), (x1, y1)


def _square(start: tuple[int, int], stop: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The box grown on its shorter axis to a square about the same centre. A fitted sky needs the
    background pixels of the square: on the box of an elongated galaxy's ellipse its error grew by a third
    (tests/test_fit_sky.py)."""
    (x0, y0), (x1, y1) = start, stop
    dx, dy = max((y1 - y0) - (x1 - x0), 0), max((x1 - x0) - (y1 - y0), 0)
    return (x0 - dx // 2, y0 - dy // 2), (x1 + dx - dx // 2, y1 + dy - dy // 2)


def _merge_stamp_flags(obj: ObjectInput, stamps: Sequence[Stamp | None]) -> list[int]:
    """Propagate data-quality flags; return indices of bands with usable data and PSF."""
    usable = []
    for b, (st, psf) in enumerate(zip(stamps, obj.psfs)):
        if st is None:
            continue
        for name in ("nan_pixels", "bad_variance", "masked_pixels", "edge"):
            if name in st.flags:
                obj.flags.set(name)
        if st.n_pix > 0 and psf is not None:
            usable.append(b)
    return usable


@staged("stamps")
def _prepare_set(
    model: ModelDef,
    objs: Sequence[ObjectInput],
    images: Sequence[BandImage | None],
    footprints: np.ndarray | None,
    keep_labels: Sequence[int],
    cfg: SourceFitConfig,
    subtract: Sequence[np.ndarray | None] | None = None,
    box: tuple[tuple[int, int], tuple[int, int]] | None = None,
    theta0: np.ndarray | None = None,
    owners: Sequence[ObjectInput] = (),
    crowd: Sequence[ObjectInput] = (),
    sky: bool = False,
    warm: bool = False,
    fluxes0: np.ndarray | None = None,
) -> Prepared | None:
    """Stamps, band inputs and starting parameters to fit a set of objects jointly on the box covering
    their stamps (``owners``: the blend whose pixels are split between its children when there are no
    footprints; ``crowd``: the whole blend, whose other children occupy pixels that are not background
    when deciding on a sky; ``sky``: fit a sky where ``cfg.sky`` is ``"auto"``, if the stamp allows it;
    ``warm``: ``theta0`` is a fitted solution, `Prepared.warm`, with its fluxes ``fluxes0``).
    `None` (with ``no_data`` flags) when no band is usable."""
    if not _any_image(images):
        for o in objs:
            o.flags.set("no_data")
        return None
    exclude = _exclude(footprints, images_origin(images), keep_labels, owners, list(objs) if owners else None,
                       cfg.footprint_only) if cfg.use_footprints else None
    halves = [_half_size(o.cov, cfg) for o in objs]
    start, stop = box if box is not None else _box(objs, halves)
    if box is None and (sky or cfg.sky in ("flat", "plane")):
        start, stop = _square(start, stop)
    stamps = _stamps(images, start, stop, exclude)
    ref = objs[0]
    usable = set(range(len(images)))
    for o in objs:
        usable &= set(_merge_stamp_flags(o, stamps))
    bands = [band_input(stamps[b], ref.psfs[b], None if subtract is None else subtract[b])
             if b in usable else None for b in range(len(images))]
    if all(b is None for b in bands):
        for o in objs:
            o.flags.set("no_data")
        return None
    if len(usable) < len(images):
        for o in objs:
            o.flags.set("missing_band")
    specs = [SourceSpec(model, (o.x, o.y)) for o in objs]
    others = [o for o in (crowd or owners) if all(o is not m for m in objs)]
    # The background test only where a sky is asked for (it validates ``cfg.sky`` unless that is "auto").
    sky = (sky or cfg.sky != "auto") and _sky_allowed(list(objs) + others, bands, cfg)
    if theta0 is None:
        psf_cov = next(p for p in ref.psfs if p is not None).covariance()
        starts = [initial_theta(model, o.x, o.y, o.cov, psf_cov, cfg.n_init) for o in objs]
        for th in starts:
            extra_starts(model, th)  # shifts the main start; blends use that one only
        theta0 = np.concatenate(starts)
    return Prepared(specs, theta0, bands, [o.flags for o in objs], sky=sky,
                    sky_plane=sky and cfg.sky == "plane", warm=warm, fluxes0=fluxes0 if warm else None)


SKY_DETECT_SIGMAS = 3.0
"""``sky="auto"`` adds a sky to a fit where, after a fit without one, the mean residual of the background
pixels differs from zero by more than this many of its errors in some band (`_sky_detected`). A flat
sky that the data do not show costs precision (on the 31x31 stamp of an r_e = 3 pixel galaxy at S/N 50
it doubled the flux scatter) and removes no bias."""


def _sky_allowed(objs: Sequence[ObjectInput], bands: Sequence, cfg: SourceFitConfig) -> bool:
    """Whether a stamp may carry a sky: ``cfg.sky`` is ``"flat"`` or ``"plane"`` or, for ``"auto"``, at
    least ``cfg.sky_min_background`` of its pixels lie beyond 3 observed sigma of every object on it."""
    if cfg.sky not in ("auto", "flat", "plane", "none"):
        raise ValueError(f"sky must be 'auto', 'flat', 'plane' or 'none', not {cfg.sky!r}")
    if cfg.sky != "auto":
        return cfg.sky in ("flat", "plane")
    b = next(b for b in bands if b is not None)
    objs = _near_stamp(objs, b, 3.0)
    centres = np.array([(o.x, o.y) for o in objs], float).reshape(-1, 2)
    bg = background_pixels(b.weight, b.x0, b.y0, centres, [o.cov for o in objs])
    return bool(np.count_nonzero(bg) >= cfg.sky_min_background * np.count_nonzero(b.weight))


def _near_stamp(objs: Sequence[ObjectInput], band, sigmas: float) -> list[ObjectInput]:
    """The objects whose ``sigmas``-sigma regions (observed covariance bounded by its trace; 2 pixels
    without one) can touch a stamp: the others cannot change `background_pixels`."""
    ny, nx = band.weight.shape
    out = []
    for o in objs:
        reach = sigmas * (math.sqrt(max(float(o.cov[0, 0] + o.cov[1, 1]), 0.0)) if o.cov is not None else 2.0)
        if band.x0 - reach <= o.x <= band.x0 + nx - 1 + reach and band.y0 - reach <= o.y <= band.y0 + ny - 1 + reach:
            out.append(o)
    return out


def _sky_detected(prep: Prepared, outcomes: Sequence[SourceOutcome], objs: Sequence[ObjectInput]) -> bool:
    """Whether the residual of a fit without sky shows a pedestal: its inverse-variance-weighted mean over
    the pixels beyond 3, or beyond 5, observed sigma of ``objs`` is significant (`SKY_DETECT_SIGMAS`)."""
    if any(o is None or not np.isfinite(o.theta).all() for o in outcomes):
        return False
    models = prep.fitted_models(outcomes)
    # The sources near a stamp depend on its box only: found once for the bands that share one.
    near_of: dict[tuple, tuple[np.ndarray, list]] = {}
    for b, m in zip(prep.bands, models):
        if b is None or m is None:
            continue
        box = (b.x0, b.y0, b.weight.shape)
        if box not in near_of:
            near = _near_stamp(objs, b, 5.0)
            near_of[box] = (np.array([(o.x, o.y) for o in near], float).reshape(-1, 2), [o.cov for o in near])
        centres, covs = near_of[box]
        # Beyond 3 and beyond 5 observed sigma: a fit without sky partly absorbs a pedestal into its
        # wings, which hides it near the galaxy (a COSMOS disk: 1.3 sigma beyond 3, 5.2 beyond 5).
        for radius in (3.0, 5.0):
            bg = background_pixels(b.weight, b.x0, b.y0, centres, covs, radius)
            w = b.weight[bg]
            w_sum = w.sum()
            if w.size < 50 or not (w_sum > 0):
                continue
            mean = float((w * (b.image[bg] - m[bg])).sum() / w_sum)
            if abs(mean) * np.sqrt(w_sum) > SKY_DETECT_SIGMAS:
                return True
    return False


def _prep_box(prep: Prepared) -> tuple[tuple[int, int], tuple[int, int]]:
    boxes = [(b.x0, b.y0, b.x0 + b.image.shape[1], b.y0 + b.image.shape[0]) for b in prep.bands if b is not None]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes)), (max(b[2] for b in boxes), max(b[3] for b in boxes))


def _grown_box(
    prep: Prepared, outcomes: Sequence[SourceOutcome], images: Sequence[BandImage | None], cfg: SourceFitConfig,
    limit: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The box a group's stamps must grow to so that they hold its fitted models (`required_half_size`),
    or `None` when the present box already does (or growing is disabled, or it cannot grow further).
    ``limit``: a box it may not grow beyond (the group's footprints)."""
    if cfg.stamp_flux_fraction <= 0 and cfg.stamp_edge_noise <= 0:
        return None
    (x0, y0), (x1, y1) = _prep_box(prep)
    nx0, ny0, nx1, ny1 = x0, y0, x1, y1
    for out in outcomes:
        if out is None or out.flags.fatal or not np.isfinite(out.theta).all():
            continue
        (a0, b0), (a1, b1) = _model_box(out, prep.bands, cfg, min_half=0)
        nx0, ny0 = min(nx0, a0), min(ny0, b0)
        nx1, ny1 = max(nx1, a1), max(ny1, b1)
    if limit is not None:
        nx0, ny0 = max(nx0, min(x0, limit[0][0])), max(ny0, min(y0, limit[0][1]))
        nx1, ny1 = min(nx1, max(x1, limit[1][0])), min(ny1, max(y1, limit[1][1]))
    # Keep within the images: a box beyond them adds no pixels.
    im = next(i for i in images if i is not None)
    ox, oy = im.origin
    nx0, ny0 = max(nx0, min(x0, ox)), max(ny0, min(y0, oy))
    nx1 = min(nx1, max(x1, ox + im.image.shape[1]))
    ny1 = min(ny1, max(y1, oy + im.image.shape[0]))
    # Grow only by a margin that matters (a refit costs a fit): 10% of the size or 3 pixels per side.
    margin = max(3, int(0.1 * max(x1 - x0, y1 - y0)))
    if max(x0 - nx0, y0 - ny0, nx1 - x1, ny1 - y1) < margin:
        return None
    return (nx0, ny0), (nx1, ny1)


def _footprint_box(footprints, images, labels, cfg) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Bounding box of the footprints ``labels`` when fits use only their own footprint pixels
    (``footprint_only``): stamps never need to grow beyond it."""
    keep = [lab for lab in labels if lab != 0]
    if footprints is None or not cfg.footprint_only or not keep or not _any_image(images):
        return None
    rows, cols = np.nonzero(np.isin(footprints, keep))
    if rows.size == 0:
        return None
    ox, oy = images_origin(images)
    return (int(cols.min()) + ox, int(rows.min()) + oy), (int(cols.max()) + 1 + ox, int(rows.max()) + 1 + oy)


def _grow_stamps(
    model: ModelDef,
    groups: Sequence[tuple[Sequence[ObjectInput], Sequence[int], Sequence[ObjectInput], Prepared,
                           list[SourceOutcome]]],
    images: Sequence[BandImage | None],
    footprints: np.ndarray | None,
    cfg: SourceFitConfig,
    n_threads: int,
) -> list[tuple[Prepared, list[SourceOutcome]]]:
    """Refit groups whose stamps do not hold their fitted models on grown stamps, or whose residual shows a
    sky pedestal (`_sky_detected`) with a sky (up to two rounds).

    ``groups`` holds per fitted group ``(objects, footprint labels kept, owners, prep, outcomes)``; the
    result is the final ``(prep, outcomes)`` per group. A refit replaces the first fit unless it failed.
    """
    current = [(prep, list(outs)) for _, _, _, prep, outs in groups]
    # Only a group whose fit changed in the previous round can need another refit: the test of one that
    # did not would repeat that round's (its stamps, its fit and so its answer are the same).
    changed = set(range(len(groups)))
    for _ in range(2):
        todo = []
        for k, (objs, keep, owners, _, _) in enumerate(groups):
            if k not in changed:
                continue
            prep, outs = current[k]
            box = _grown_box(prep, outs, images, cfg, _footprint_box(footprints, images, keep, cfg))
            crowd = list(objs) + [o for o in owners if all(o is not m for m in objs)]
            sky = prep.sky or (cfg.sky == "auto" and not any(o.flags.fatal for o in outs)
                               and _sky_allowed(crowd, prep.bands, cfg) and _sky_detected(prep, outs, crowd))
            if box is None and sky == prep.sky:
                continue
            theta0 = np.concatenate([o.theta for o in outs])
            fluxes0 = np.concatenate([o.fluxes for o in outs], axis=1)
            box = box or _prep_box(prep)
            if sky:
                box = _square(*box)
            new = _prepare_set(model, objs, images, footprints, keep, cfg, box=box, theta0=theta0,
                               owners=owners, sky=sky, warm=True, fluxes0=fluxes0)
            if new is not None:
                todo.append((k, new))
        if not todo:
            break
        changed = set()
        for (k, new), outs in zip(todo, solve([t[1] for t in todo], cfg.settings, n_threads)):
            old = current[k][1]
            if any(o.flags.fatal for o in outs) and not any(o.flags.fatal for o in old):
                continue
            changed.add(k)
            current[k] = (new, list(outs))
    return current


def _with_residual_sources(
    fits: Sequence[tuple[Prepared, list[SourceOutcome]]], cfg: SourceFitConfig, n_threads: int
) -> list[list[SourceOutcome]]:
    """Refit groups with significant residual peaks (`refit_with_residual_sources`), if enabled."""
    if cfg.residual_threshold <= 0:
        return [list(outcomes) for _, outcomes in fits]
    return refit_with_residual_sources(fits, cfg.settings, cfg.residual_threshold, cfg.residual_min_separation,
                                       cfg.residual_max_sources, n_threads, cfg.residual_max_iter)


def _fit_group(model, objs, images, footprints, keep_labels, cfg, **kw
               ) -> tuple[list[SourceOutcome | None], Prepared | None]:
    """Fit one set of objects jointly: outcomes and the final inputs (stamps grown unless a box is given)."""
    prep = _prepare_set(model, objs, images, footprints, keep_labels, cfg, **kw)
    if prep is None:
        return [None] * len(objs), None
    # One group on one thread: blends in "subtract" mode run in parallel Python threads.
    fit = (prep, list(solve([prep], cfg.settings, 1)[0]))
    if kw.get("box") is None and kw.get("subtract") is None:
        fit = _grow_stamps(model, [(objs, keep_labels, kw.get("owners", ()), *fit)], images, footprints, cfg, 1)[0]
    outcomes = cast(list[SourceOutcome | None], _with_residual_sources([fit], cfg, 1)[0])
    return outcomes, fit[0]


def _fit_set(model, objs, images, footprints, keep_labels, cfg, **kw) -> list[SourceOutcome | None]:
    return _fit_group(model, objs, images, footprints, keep_labels, cfg, **kw)[0]


@staged("stamps")
def _measure(o: ObjectInput, group: Sequence[ObjectInput], images, footprints, cfg: SourceFitConfig) -> None:
    # Without any image there is nothing to measure; `_prepare_set` flags ``no_data``.
    if o.cov is None and _any_image(images):
        excl = _exclude(footprints, images_origin(images), [o.label], group, o, cfg.footprint_only)
        o.cov = _measure_cov(o, images, 2 * cfg.stamp_min, excl)
        if o.cov is None:
            o.flags.set("bad_init")


def fit_objects(
    model: ModelDef,
    objs: Sequence[ObjectInput],
    images: Sequence[BandImage | None],
    footprints: np.ndarray | None,
    cfg: SourceFitConfig,
    route: Route | None = None,
) -> list[SourceOutcome | None]:
    """Fit one group of objects (an isolated object or the children of one blend).

    Parameters
    ----------
    model : `ModelDef`
        The model of every object of the group.
    objs : sequence of `ObjectInput`
        The objects (their ``cov`` is measured here when `None`; flags are updated in place).
    images : sequence of `BandImage` or `None`
        Images per band (`None`: band missing).
    footprints : `numpy.ndarray` or `None`
        Label image aligned with the images.
    cfg : `SourceFitConfig`
        Configuration.
    route : `Route`, optional
        How the group is fitted (default: `route_group` of its size and ``cfg``).

    Returns
    -------
    outcomes : `list` [`SourceOutcome` or `None`]
        One per object; `None` for objects that could not be fitted (flags say why).
    """
    labels = [o.label for o in objs]
    for o in objs:
        _measure(o, objs, images, footprints, cfg)
    route = route or route_group(len(objs), cfg.blend_mode, cfg.max_children)
    if route.kind != "blocks":
        return _fit_set(model, objs, images, footprints, labels, cfg)
    if route.too_many_children:
        for o in objs:
            o.flags.set("too_many_children")
    return _fit_in_blocks(model, objs, images, footprints, cfg, route.block_size)


def _blocks(objs: Sequence[ObjectInput], size: int, direction: tuple[float, float]) -> list[list[int]]:
    """Partition children into spatially compact blocks of at most ``size``: seeds taken in order along
    ``direction``, each with its nearest unassigned siblings."""
    xy = np.array([(o.x, o.y) for o in objs], float)
    order = list(np.argsort(xy @ np.asarray(direction, float), kind="stable"))
    free = set(range(len(objs)))
    out = []
    for seed in order:
        if seed not in free:
            continue
        rest = sorted(free - {seed}, key=lambda j: float(np.hypot(*(xy[j] - xy[seed]))))
        block = [int(seed)] + [int(j) for j in rest[: size - 1]]
        free -= set(block)
        out.append(block)
    return out


def _fit_in_blocks(model, objs, images, footprints, cfg: SourceFitConfig, size: int) -> list[SourceOutcome | None]:
    """Fit a blend block by block on each block's own stamps, the other children's current models
    subtracted where they overlap those stamps, sweeping until no child changes.

    Every child starts from its moments (`initial_theta`), and the fluxes of all children are solved
    jointly at those shapes. Each sweep then solves the fluxes of all children jointly at their current
    shapes (`_joint_fluxes`: linear and sparse, it settles the flux degeneracy between overlapping
    neighbours at once) and refits the blocks on their stamps with the models of the siblings whose model
    boxes overlap them subtracted, rendered on those stamps only.

    The first sweep fits the children one at a time, brightest first (`_brightness_layers`): each with its
    brighter neighbours' fitted models subtracted (and its fainter ones' starting models). A faint child
    fitted next to bright neighbours' starting models took their misfit light into huge wings (n = 6, r_e
    8 times its own, 3.7 times its flux), from which the sweeps took many more to recover.

    The later sweeps fit blocks of at most ``size`` spatially compact children, alternating between two
    partitions so that no pair of neighbours stays split by a block boundary; within a sweep, blocks are
    coloured so that no two blocks of one colour overlap each other's stamps, the blocks of a colour are
    fitted in one C++ batch and the next colour subtracts their new models (a Gauss-Seidel sweep). Each
    refit is over-relaxed (`OVER_RELAXATION`) for what the neighbours see and the next fit starts from.
    The first half of the sweeps stop their fits at loose tolerances (`LOOSE_XTOL`); the second half refit
    every block at the configured ones, and their fits are the result. A block is refitted only while one
    of its children or an overlapping sibling changed (flux by more than `SUBTRACT_TOL` of its error, or
    centre by 0.1 pixel), at most ``cfg.subtract_iterations`` sweeps. Every fit is on the stamps of a few
    children, so the cost per child does not grow with the size of the blend. With ``sky="auto"``, a
    child or block whose residual after its first fit shows a pedestal (`_sky_detected`) carries a sky
    from then on. Last, the errors are marginalised over the neighbours (`_marginal_errors`, per block of
    the last sweep).
    """
    n = len(objs)
    labels = [o.label for o in objs]
    # No residual-source search: the residuals of a block include its neighbours' imperfectly subtracted
    # models, and point sources placed there take the neighbours' light (blends of 36: 86% of the
    # children within 3 sigma of their true flux with the search, 93% without).
    cfg = cast(SourceFitConfig, cfg.copy())
    cfg.residual_threshold = 0.0
    current: list[SourceOutcome | None] = [None] * n
    child_box: list = [_box([o], [_half_size(o.cov, cfg)]) for o in objs]
    models: list[SourceOutcome | None] = [_start_model(model, o, images, cfg.n_init) for o in objs]
    for o, m in zip(objs, models):
        if m is None:
            # No band with data and a PSF: the preparation sets the flags that say so.
            _prepare_set(model, [o], images, footprints, [o.label], cfg)
    sky = [False] * n
    units = _UnitModels(objs, child_box)
    partitions = [_blocks(objs, size, (1.0, 0.3))]
    if size > 1:
        partitions.append(_blocks(objs, size, (0.3, 1.0)))
    changed = [m is not None for m in models]
    n_sweeps = max(cfg.subtract_iterations, 1)
    # The first sweeps' fits are conditional on neighbours still far from their final models: they stop at
    # looser tolerances; the later ones, whose fits are reported, at the configured ones.
    loose = cast(FitSettings, cfg.settings.copy())
    loose.xtol, loose.rtol = max(LOOSE_XTOL, cfg.settings.xtol), max(LOOSE_RTOL, cfg.settings.rtol)
    n_loose = n_sweeps // 2
    for sweep in range(n_sweeps):
        if not any(changed):
            if sweep > n_loose:
                break
            n_loose = sweep  # converged at loose tolerances: one more sweep at the configured ones
        if sweep == n_loose:
            changed = [m is not None for m in models]  # every block once at the configured tolerances
        settings = loose if sweep < n_loose else cfg.settings
        moved, changed = list(changed), [False] * n
        render = _joint_fluxes(objs, models, units, images, footprints, labels, cfg)
        first = sweep == 0
        blocks = [[i] for i in range(n)] if first else partitions[sweep % len(partitions)]
        block_of = {i: k for k, block in enumerate(blocks) for i in block}
        bx = [_union(*(child_box[i] for i in block)) for block in blocks]
        near = [_overlapping(models, child_box, block, bx[k]) for k, block in enumerate(blocks)]
        if first:
            colour = _brightness_layers(near, [np.nansum(f) if f is not None else -np.inf for f in render])
        else:
            colour = _colour_blocks(near, block_of, len(blocks))
        for c in range(max(colour, default=-1) + 1):
            todo = []
            for k, block in enumerate(blocks):
                if colour[k] != c or any(models[i] is None for i in block):
                    continue
                if not any(moved[j] or changed[j] for j in near[k] + block):
                    continue
                start, stop = bx[k]
                members = [objs[i] for i in block]
                sub = [None if im is None else _siblings_image(objs, models, near[k], b, im, start, stop, units, render)
                       for b, im in enumerate(images)]
                before = [cast(SourceOutcome, models[i]) for i in block]
                crowd = members + [objs[j] for j in near[k]]
                prep = _prepare_set(model, members, images, footprints, [o.label for o in members] + labels, cfg,
                                    subtract=sub, box=(start, stop), theta0=np.concatenate([b.theta for b in before]),
                                    crowd=crowd, sky=any(sky[i] for i in block), warm=not first,
                                    fluxes0=np.concatenate([b.fluxes for b in before], axis=1))
                if prep is not None:
                    # The refit gets copies of the flags: they replace the earlier fit's only if it is kept.
                    prep.flags = [FlagSet(mask=f.mask) for f in prep.flags]
                    todo.append((k, prep, crowd))
            fits = solve([t[1] for t in todo], settings, cfg.n_threads)
            for (k, prep, crowd), refit in zip(todo, fits):
                if any(r.flags.fatal for r in refit) and all(current[i] is not None for i in blocks[k]):
                    continue
                if (sweep == 0 and cfg.sky == "auto" and not prep.sky and _sky_allowed(crowd, prep.bands, cfg)
                        and _sky_detected(prep, refit, crowd)):
                    for i in blocks[k]:
                        sky[i] = changed[i] = True
                for i, new in zip(blocks[k], refit):
                    old, last = current[i], models[i]
                    objs[i].flags.mask = new.flags.mask
                    new.flags = objs[i].flags
                    changed[i] |= old is None or _changed(old, new)
                    current[i] = models[i] = new
                    if old is not None and last is not None:
                        # Over-relaxed: what the neighbours see and the next fit starts from.
                        models[i] = _relaxed(last, new, OVER_RELAXATION, cfg.settings)
                    render[i] = cast(SourceOutcome, models[i]).fluxes
                    if old is None:
                        # The stamps of later sweeps hold the fitted model (`_model_box`).
                        child_box[i] = _union(child_box[i], _model_box(new, prep.bands, cfg))
    _marginal_errors(model, objs, current, units, images, footprints, cfg, sky, blocks)
    return current


LOOSE_XTOL, LOOSE_RTOL = 1e-2, 1e-4
"""Tolerances (`FitSettings` ``xtol``, ``rtol``) of the block fits in the first half of the sweeps of
`_fit_in_blocks`."""

OVER_RELAXATION = 1.3
"""A block's refit moves its children's shapes and fluxes this many times the step from their previous
models (`_relaxed`): the neighbours trade light through their wings along each child's flat index-size-flux
valley, so plain sweeps converge by a factor of only ~0.68 per sweep (measured against the joint fit of all
children; the same with fit tolerances 1000 times tighter). The reported values are the block fits."""


def _relaxed(last: SourceOutcome, new: SourceOutcome, omega: float, settings: FitSettings) -> SourceOutcome:
    """``new`` with its shape parameters and fluxes moved to ``last + omega * (new - last)``, clipped to the
    fit's bounds (`ParameterBounds`); its centre stays the fit's (it is bounded about the detection)."""
    theta = last.theta + omega * (new.theta - last.theta)
    n_centre = 2 if new.spec.model.free_centroid else 0
    theta[:n_centre] = new.theta[:n_centre]
    bounds = ParameterBounds(new.spec.model.nonlinear_kinds, settings)
    theta = np.clip(theta, bounds.lo, bounds.hi)
    fluxes = np.where(np.isfinite(last.fluxes), last.fluxes + omega * (new.fluxes - last.fluxes), new.fluxes)
    if not (np.isfinite(theta).all() and np.isfinite(fluxes[np.isfinite(new.fluxes)]).all()):
        return new
    return dataclasses.replace(new, theta=theta, fluxes=fluxes)


CORE_SIGMAS = 2.0
"""`_marginal_errors` marginalises a child over the siblings whose cores (this many observed sigma,
``sqrt(trace(cov))``, about their detections) overlap its own, on the union of those cores."""


def _marginal_errors(model, objs, fits: list[SourceOutcome | None], units: _UnitModels, images, footprints,
                     cfg: SourceFitConfig, sky: Sequence[bool], blocks: Sequence[Sequence[int]] | None = None
                     ) -> None:
    """Replace each child's errors by ones marginalised over its neighbours' parameters.

    A block's fit holds the siblings outside the block at their models, so its errors are conditional on
    them: where neighbours overlap, 0.5-0.9 times those of a joint fit of the whole blend. Per block
    (``blocks``; default: each child alone), the Fisher matrix of its children and the siblings whose
    cores (`CORE_SIGMAS`) overlap theirs (all their shape parameters, fluxes and sky) is evaluated once on
    the union of those cores, the other siblings' models subtracted, and inverted (an engine problem with
    ``max_iter=0``); each child of the block takes its marginal errors from it. The values stay those of
    the block fits.
    """
    settings = cast(FitSettings, cfg.settings.copy())
    settings.max_iter = 0
    labels = [o.label for o in objs]
    # Cores: CORE_SIGMAS observed sigma (trace), where most of a child's light and information lie.
    core_halves = [int(np.ceil(CORE_SIGMAS * np.sqrt(np.trace(o.cov)))) if o.cov is not None else cfg.stamp_min
                   for o in objs]
    cores = [_box([o], [(h, h)]) for o, h in zip(objs, core_halves)]
    fitted = [f is not None and np.isfinite(f.theta).all() for f in fits]
    todo = []
    for block in blocks if blocks is not None else [[i] for i in range(len(fits))]:
        block = [i for i in block if fitted[i]]
        window = list(block)
        for i in block:
            window += [j for j in _overlapping(fits, cores, window, cores[i]) if fitted[j]]
        if len(window) < 2:
            continue
        start, stop = _union(*(cores[j] for j in window))
        others = _overlapping(fits, units.boxes, window, (start, stop))
        sub = [None if im is None else _siblings_image(objs, fits, others, b, im, start, stop, units)
               for b, im in enumerate(images)]
        # Copies: the window's stamp flags (edge, masked pixels) describe its box, not the children.
        members = [dataclasses.replace(objs[j], flags=FlagSet(mask=objs[j].flags.mask)) for j in window]
        theta0 = np.concatenate([cast(SourceOutcome, fits[j]).theta for j in window])
        prep = _prepare_set(model, members, images, footprints, labels, cfg, subtract=sub, box=(start, stop),
                            theta0=theta0, crowd=members, sky=any(sky[j] for j in window))
        if prep is not None and prep.sky == (cast(SourceOutcome, fits[block[0]]).sky is not None):
            todo.append((block, prep))
    for (block, _), outs in zip(todo, solve([t[1] for t in todo], settings, cfg.n_threads)):
        for i, window_fit in zip(block, outs):
            fit = cast(SourceOutcome, fits[i])
            if "bad_fit" in window_fit.flags or "singular_fisher" in window_fit.flags \
                    or not np.isfinite(np.diag(window_fit.theta_cov)).all():
                continue
            fit.theta_cov = window_fit.theta_cov
            fit.flux_cov = window_fit.flux_cov
            if window_fit.sky_err is not None:
                fit.sky_err = window_fit.sky_err


def _start_model(model: ModelDef, obj: ObjectInput, images, n_init: float) -> SourceOutcome | None:
    """A child's starting model (shape from its moments, unit fluxes) before its first fit."""
    psfs = [p for p, im in zip(obj.psfs, images) if p is not None and im is not None]
    if not psfs:
        return None
    theta = initial_theta(model, obj.x, obj.y, obj.cov, psfs[0].covariance(), n_init)
    extra_starts(model, theta)  # the main start, as in `_prepare_set`
    spec = SourceSpec(model, (obj.x, obj.y))
    fluxes = np.array([[1.0] * spec.n_comp if p is not None and im is not None else [np.nan] * spec.n_comp
                       for p, im in zip(obj.psfs, images)])
    return SourceOutcome(spec, theta, np.full((len(theta), len(theta)), np.nan), fluxes, [None] * len(images),
                         np.nan, 0, 0, FlagSet())


def _union(*boxes):
    """The box covering the given ``((x0, y0), (x1, y1))`` boxes."""
    return ((min(b[0][0] for b in boxes), min(b[0][1] for b in boxes)),
            (max(b[1][0] for b in boxes), max(b[1][1] for b in boxes)))


def _model_box(out: SourceOutcome, bands, cfg: SourceFitConfig, min_half: int | None = None):
    """The box that holds a fitted source's model (`required_half_size` over its bands), at least
    ``min_half`` (default ``cfg.stamp_min``) pixels from its centre pixel."""
    m = out.spec.model
    cx, cy = (out.theta[0], out.theta[1]) if m.free_centroid else out.spec.xy_fixed
    ix, iy = math.floor(cx + 0.5), math.floor(cy + 0.5)
    hx = hy = cfg.stamp_min if min_half is None else min_half
    if np.isfinite(out.theta).all():
        use = [b for b, band in enumerate(bands) if band is not None and np.isfinite(out.fluxes[b]).all()]
        if use:
            gaussians = band_gaussians([out.spec], out.theta, out.fluxes[use], [bands[b].psf for b in use])
            for b, g in zip(use, gaussians):
                noise = _median_noise(bands[b].weight)
                gx, gy = required_half_size(g, noise, cfg.stamp_flux_fraction, cfg.stamp_edge_noise,
                                            cfg.stamp_max)
                hx, hy = max(hx, gx), max(hy, gy)
    return (ix - hx, iy - hy), (ix + hx + 1, iy + hy + 1)


def _median_noise(weight: np.ndarray) -> float:
    """Median pixel noise (sigma) of a stamp's weighted pixels; without a median where the weights are
    all equal (a constant variance, the usual coadd stamp)."""
    _, w = weighted_pixels(weight, weight)
    if w.size and w.min() == w.max():
        return float(1.0 / np.sqrt(w[0]))
    return float(np.median(1.0 / np.sqrt(w)))


def _colour_blocks(near: Sequence[Sequence[int]], block_of: dict[int, int], n_blocks: int) -> list[int]:
    """Greedy colouring of blocks: two blocks get different colours when a child of one reaches the
    stamps of the other (``near``: per block, the children reaching it)."""
    adjacent: list[set[int]] = [set() for _ in range(n_blocks)]
    for k, reaching in enumerate(near):
        for j in reaching:
            other = block_of[j]
            if other != k:
                adjacent[k].add(other)
                adjacent[other].add(k)
    colour = [-1] * n_blocks
    for k in sorted(range(n_blocks), key=lambda k: -len(adjacent[k])):
        used = {colour[a] for a in adjacent[k]}
        colour[k] = next(c for c in range(n_blocks + 1) if c not in used)
    return colour


def _brightness_layers(near: Sequence[Sequence[int]], brightness: Sequence[float]) -> list[int]:
    """Layers (batches fitted in turn) of single children, brightest first: a child comes after every
    brighter child that reaches it (``near``: per child, the children whose boxes overlap its own), so it
    is fitted with those neighbours' fitted models subtracted."""
    layer = [0] * len(near)
    for i in sorted(range(len(near)), key=lambda i: -brightness[i]):
        brighter = [layer[j] + 1 for j in near[i] if (brightness[j], -j) > (brightness[i], -i)]
        layer[i] = max(brighter, default=0)
    return layer


SUBTRACT_TOL = 0.1
"""Sweeps of ``"subtract"`` mode stop when no child's flux moved by more than this many of its errors."""


def _changed(before: SourceOutcome, after: SourceOutcome) -> bool:
    df = np.abs(nan_to_num(after.fluxes - before.fluxes))
    err = np.array([np.sqrt(np.trace(c)) if c is not None else np.inf for c in after.flux_cov])
    flux_moved = bool((df.sum(axis=1) > SUBTRACT_TOL * nan_to_num(err, nan=np.inf)).any())
    centre_moved = after.spec.model.free_centroid and bool(np.hypot(*(after.theta[:2] - before.theta[:2])) > 0.1)
    return flux_moved or centre_moved


def _overlapping(fits, boxes, block, box) -> list[int]:
    """Siblings (fitted, not in ``block``) whose model boxes (`_model_box`) overlap ``box``."""
    (x0, y0), (x1, y1) = box
    return [j for j, (fit, ((a0, b0), (a1, b1))) in enumerate(zip(fits, boxes))
            if fit is not None and j not in block and a0 < x1 and x0 < a1 and b0 < y1 and y0 < b1]


def _siblings_image(objs, fits, near, b, im, start, stop, units: _UnitModels, fluxes=None) -> np.ndarray:
    """Sum of the models of the siblings ``near`` in band ``b`` over the part of the box on the image: each
    sibling's unit-flux images over its model box (``units``) scaled by its fluxes (``fluxes``: per child,
    fluxes replacing its fit's). The model box holds all but ``stamp_flux_fraction`` of the model."""
    shape = (stop[1] - start[1], stop[0] - start[0])
    img = np.zeros(shape)
    for j in near:
        other, psf = fits[j], objs[j].psfs[b]
        f = None if other is None else (other.fluxes if fluxes is None or fluxes[j] is None else fluxes[j])
        if other is None or psf is None or f is None or not np.isfinite(f[b]).all():
            continue
        ((a0, b0), (a1, b1)), unit_images = units.get(j, other, b)
        x0, y0, x1, y1 = max(a0, start[0]), max(b0, start[1]), min(a1, stop[0]), min(b1, stop[1])
        if x0 >= x1 or y0 >= y1:
            continue
        for c, unit in enumerate(unit_images):
            img[y0 - start[1] : y1 - start[1], x0 - start[0] : x1 - start[0]] += \
                f[b][c] * unit[y0 - b0 : y1 - b0, x0 - a0 : x1 - a0]
    # Clip to the part of the box inside the image, as cut_box does.
    x0, y0 = max(start[0], im.origin[0]), max(start[1], im.origin[1])
    x1 = min(stop[0], im.origin[0] + im.image.shape[1])
    y1 = min(stop[1], im.origin[1] + im.image.shape[0])
    return img[y0 - start[1] : y1 - start[1], x0 - start[0] : x1 - start[0]]


class _UnitModels:
    """Unit-flux model images of each child's components over its model box (``boxes``, a list updated
    in place), per band, rendered once per fit: a child's images are rendered again only when its fit or
    its box changed. Subtracting siblings and solving the joint fluxes then only slice and scale them."""

    def __init__(self, objs: Sequence[ObjectInput], boxes: list):
        self.objs, self.boxes = objs, boxes
        self._cache: dict[tuple[int, int], tuple[SourceOutcome, tuple, list[np.ndarray]]] = {}

    PAD = 0.5

    def get(self, j: int, fit: SourceOutcome, b: int) -> tuple[tuple[tuple[int, int], tuple[int, int]],
                                                                list[np.ndarray]]:
        """The box (the child's model box grown by ``PAD`` of its size per side) and the images."""
        (a0, b0), (a1, b1) = self.boxes[j]
        px, py = int(np.ceil(self.PAD * (a1 - a0))), int(np.ceil(self.PAD * (b1 - b0)))
        box = ((a0 - px, b0 - py), (a1 + px, b1 + py))
        hit = self._cache.get((j, b))
        if hit is None or hit[0] is not fit or hit[1] != box:
            psf = self.objs[j].psfs[b]
            assert psf is not None  # callers skip bands without a PSF
            hit = (fit, box, _unit_images(fit, psf, *box))
            self._cache[(j, b)] = hit
        return hit[1], hit[2]


def _unit_images(out: SourceOutcome, psf: PsfMixture, start, stop) -> list[np.ndarray]:
    """Unit-flux model image of each component of a fitted child over a box (C++ rendering)."""
    shape = (stop[1] - start[1], stop[0] - start[0])
    band = BandInput(np.zeros(shape), np.zeros(shape), start[0], start[1], psf)
    n_comp = out.spec.n_comp
    images = []
    for c in range(n_comp):
        image = model_stamps([out.spec], out.theta, np.eye(n_comp)[c][None, :], [band])[0]
        assert image is not None  # the band is given
        images.append(image)
    return images


def _joint_fluxes(objs, fits, units: _UnitModels, images, footprints, labels, cfg) -> list[np.ndarray | None]:
    """Fluxes of all children solved jointly at their current shapes (per band, linear least squares over
    the union of their stamps, each child's model over its own stamp): the fluxes the next sweep
    subtracts. Pixels of objects outside the group are excluded as in the fits; the children's mean
    fitted sky is removed from the data first. Children or bands without a fit keep their fitted fluxes.
    """
    boxes = units.boxes
    out = [None if f is None else np.array(f.fluxes, float) for f in fits]
    live = [i for i, f in enumerate(fits) if f is not None and np.isfinite(f.theta).all()]
    if len(live) < 2 or not _any_image(images):
        return out
    x0 = min(boxes[i][0][0] for i in live)
    y0 = min(boxes[i][0][1] for i in live)
    x1 = max(boxes[i][1][0] for i in live)
    y1 = max(boxes[i][1][1] for i in live)
    exclude = _exclude(footprints, images_origin(images), labels) if cfg.use_footprints else None
    for b, im in enumerate(images):
        if im is None:
            continue
        st = cut_box(im.image, im.variance, im.bad, im.origin, (x0, y0), (x1, y1), exclude)
        if st.n_pix == 0:
            continue
        skies = [fits[i].sky[b] for i in live if fits[i].sky is not None and np.isfinite(fits[i].sky[b])]
        data = st.image - (np.mean(skies) if skies else 0.0)
        cols, index = [], []
        for i in live:
            psf = objs[i].psfs[b]
            if psf is None or not np.isfinite(fits[i].fluxes[b]).all():
                continue
            (sx, sy), (ex, ey) = boxes[i]
            sx, sy = max(sx, st.x0), max(sy, st.y0)
            ex, ey = min(ex, st.x0 + st.shape[1]), min(ey, st.y0 + st.shape[0])
            if sx >= ex or sy >= ey:
                continue
            ((bx0, by0), _), unit_images = units.get(i, fits[i], b)
            for c, unit in enumerate(unit_images):
                cols.append(((sy - st.y0, ey - st.y0, sx - st.x0, ex - st.x0),
                             unit[sy - by0 : ey - by0, sx - bx0 : ex - bx0]))
                index.append((i, c))
        n = len(cols)
        if n < 2:
            continue
        gram, rhs = np.zeros((n, n)), np.zeros(n)
        for a, ((ya, yb, xa, xb), ma) in enumerate(cols):
            rhs[a] = float(np.sum(st.weight[ya:yb, xa:xb] * data[ya:yb, xa:xb] * ma))
            for k in range(a, n):
                (yc, yd, xc, xd), mk = cols[k]
                oy0, oy1, ox0, ox1 = max(ya, yc), min(yb, yd), max(xa, xc), min(xb, xd)
                if oy0 >= oy1 or ox0 >= ox1:
                    continue
                v = float(np.sum(st.weight[oy0:oy1, ox0:ox1] * ma[oy0 - ya : oy1 - ya, ox0 - xa : ox1 - xa]
                                 * mk[oy0 - yc : oy1 - yc, ox0 - xc : ox1 - xc]))
                gram[a, k] = gram[k, a] = v
        if not (np.isfinite(gram).all() and np.isfinite(rhs).all()):
            continue
        # Non-negative: these fluxes only shape the models subtracted from the neighbours, and a nearly
        # collinear pair (two children on one peak) must not swing to large opposite fluxes.
        f = np.asarray(nnls_gram(gram, rhs))
        for (i, c), v in zip(index, f):
            fluxes = out[i]
            assert fluxes is not None  # ``live`` children have fits
            fluxes[b, c] = v
    return out

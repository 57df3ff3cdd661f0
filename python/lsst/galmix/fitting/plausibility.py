"""Checks that a converged fit describes its own object: the wrong answers an optimizer reports as success.

A fit can converge to a solution that belongs to something else: its centre walks onto a brighter
neighbour, whose flux it then reports; or its shape collapses to a line or a point that no data can
support. These checks compare each fitted row with what the data say about that object alone (its
detection position and the pixels of its own footprint or aperture) and return fatal flags
(``centroid_moved``, ``flux_excess``, ``shape_collapsed``; `lsst.galmix.schema.flags`) for the rows' flag
masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import find_objects
from scipy.spatial import cKDTree

from ..models.definitions import ModelDef
from ..schema import flag_bit, flux_column, param_column
from .blend import BandImage
from .plan import placeable

__all__ = [
    "CENTROID_MIN_SHIFT",
    "CENTROID_SIGMAS",
    "FLUX_EXCESS_RATIO",
    "FLUX_EXCESS_SIGMAS",
    "MIN_AXIS_RATIO",
    "RESOLVED_RATIO",
    "aperture",
    "aperture_sums",
    "centroid_moved",
    "flux_excess",
    "implausible_flags",
    "shape_collapsed",
]

CENTROID_MIN_SHIFT = 3.0
"""Shift (pixels) from the detection position always tolerated (noise, asymmetric footprints)."""

CENTROID_SIGMAS = 2.0
"""Shift tolerated in units of the object's observed (PSF-convolved) size sigma."""

FLUX_EXCESS_RATIO = 10.0
"""Largest plausible ratio of a band's fitted total flux to the data flux in the object's own aperture."""

FLUX_EXCESS_SIGMAS = 10.0
"""Noise allowance (sigma of the aperture sum) added to the aperture flux for faint objects."""

MIN_AXIS_RATIO = 1e-3
"""Smallest plausible axis ratio: below it the fitted ellipse is a line (thinnest disks: q ~ 0.05-0.1)."""

RESOLVED_RATIO = 1.5
"""An object is resolved when the trace of its observed second moments exceeds this many times the PSF's."""


def centroid_moved(
    detection: tuple[float, float],
    fitted: tuple[float, float],
    sigma: float,
    others: np.ndarray,
) -> bool:
    """Whether a fitted centre left its object.

    The centre moved if it lies more than ``max(CENTROID_MIN_SHIFT, CENTROID_SIGMAS * sigma)`` from the
    detection position, or more than 1 pixel from it and nearer to another catalogue object than to
    its own detection (it moved onto a neighbour).

    Parameters
    ----------
    detection : `tuple` [`float`, `float`]
        Catalogue ``(x, y)``.
    fitted : `tuple` [`float`, `float`]
        Fitted ``(x, y)``.
    sigma : `float`
        Observed size sigma of the object (pixels).
    others : `numpy.ndarray`
        ``(n, 2)`` positions of the other catalogue objects.
    """
    if not np.isfinite(fitted).all():
        return False
    shift = float(np.hypot(fitted[0] - detection[0], fitted[1] - detection[1]))
    if shift > max(CENTROID_MIN_SHIFT, CENTROID_SIGMAS * sigma):
        return True
    if shift <= 1.0 or len(others) == 0:
        return False
    nearest = float(np.min(np.hypot(others[:, 0] - fitted[0], others[:, 1] - fitted[1])))
    return nearest < shift


def aperture(
    shape: tuple[int, int],
    origin: tuple[int, int],
    detection: tuple[float, float],
    radius: float,
    others: np.ndarray,
    footprint: tuple[tuple[slice, slice], np.ndarray] | None = None,
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """An object's own pixels: its footprint, or a disc split with its neighbours.

    Parameters
    ----------
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)`` of the band images.
    origin : `tuple` [`int`, `int`]
        Absolute ``(x, y)`` of pixel ``[0, 0]``.
    detection : `tuple` [`float`, `float`]
        Absolute catalogue position.
    radius : `float`
        Disc radius (pixels) when there is no footprint.
    others : `numpy.ndarray`
        ``(n, 2)`` absolute positions of the neighbours that may share the disc.
    footprint : `tuple`, optional
        ``(slices, mask)`` of the object's footprint in the label image; used when given.

    Returns
    -------
    aperture : `tuple` [`tuple` [`slice`, `slice`], `numpy.ndarray`] or `None`
        Image slices and the boolean mask within them: the footprint, else the pixels within ``radius``
        of the detection that are nearer to it than to any of ``others``; `None` if off the image.
    """
    if footprint is not None:
        return footprint
    ny, nx = shape
    cx, cy = detection[0] - origin[0], detection[1] - origin[1]
    r = int(np.ceil(radius))
    x0, x1 = max(int(np.floor(cx)) - r, 0), min(int(np.floor(cx)) + r + 2, nx)
    y0, y1 = max(int(np.floor(cy)) - r, 0), min(int(np.floor(cy)) + r + 2, ny)
    if x0 >= x1 or y0 >= y1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    use = d2 <= radius**2
    for ox, oy in np.asarray(others, float).reshape(-1, 2) - np.array(origin, float):
        use &= d2 <= (xx - ox) ** 2 + (yy - oy) ** 2
    return (slice(y0, y1), slice(x0, x1)), use


def aperture_sums(image: np.ndarray, variance: np.ndarray, bad: np.ndarray | None,
                  aperture: tuple[tuple[slice, slice], np.ndarray]) -> tuple[float, float]:
    """Data flux and its noise over an `aperture`, leaving out masked, non-finite and zero-variance pixels.

    Returns
    -------
    flux, noise : `float`
        Sum of the data and the square root of the sum of the variance (0, 0 without usable pixel).
    """
    sl, use = aperture
    data, var = image[sl], variance[sl]
    use = use & np.isfinite(data) & np.isfinite(var) & (var > 0)
    if bad is not None:
        use &= ~bad[sl]
    return float(data[use].sum(dtype=np.float64)), float(np.sqrt(var[use].sum(dtype=np.float64)))


def flux_excess(flux: float, aperture_flux: float, aperture_noise: float) -> bool:
    """Whether a band's fitted total flux is far beyond the data in the object's own aperture.

    True when ``|flux| > FLUX_EXCESS_RATIO * |aperture_flux| + FLUX_EXCESS_SIGMAS * aperture_noise``:
    over 90% of the fitted light would lie outside the object's own pixels (and the excess is many sigma),
    as when a faint object's fit takes a bright neighbour's light. Non-finite inputs are not flagged.
    """
    if not (np.isfinite(flux) and np.isfinite(aperture_flux) and np.isfinite(aperture_noise)):
        return False
    return abs(flux) > FLUX_EXCESS_RATIO * abs(aperture_flux) + FLUX_EXCESS_SIGMAS * aperture_noise


def shape_collapsed(q: Sequence[float], reff: Sequence[float], resolved: bool, reff_min: float) -> bool:
    """Whether a resolved object's fitted ellipse collapsed to a line or a point.

    An unresolved source (a star) is well described by a point, whose axis ratio is unconstrained: it
    is never flagged. An object the data resolve is flagged when an extended component's axis ratio is
    below `MIN_AXIS_RATIO` or its ``reff`` ended at the lower bound.

    Parameters
    ----------
    q, reff : sequence of `float`
        Fitted axis ratios and ``reff`` (pixels) of the extended components (NaN ignored).
    resolved : `bool`
        Whether the object's observed second moments exceed the PSF's (`RESOLVED_RATIO`).
    reff_min : `float`
        Lower bound of ``reff`` (pixels) of the fit.
    """
    if not resolved:
        return False
    qs, reffs = np.asarray(q, float), np.asarray(reff, float)
    return bool(np.any(np.isfinite(qs) & (qs < MIN_AXIS_RATIO)) or np.any(np.isfinite(reffs)
                                                                       & (reffs <= 1.05 * reff_min)))


def implausible_flags(
    table: dict[str, np.ndarray],
    model: ModelDef,
    bands: Sequence[str],
    detections: np.ndarray,
    sigmas: np.ndarray,
    resolved: np.ndarray,
    labels: np.ndarray,
    images: Sequence[BandImage | None],
    footprints: np.ndarray | None,
    reff_min: float,
) -> np.ndarray:
    """The flags ``centroid_moved``, ``flux_excess`` and ``shape_collapsed`` of the rows of a patch table.

    Parameters
    ----------
    table : `dict` [`str`, `numpy.ndarray`]
        Columns of the patch table (`lsst.galmix.schema.source_columns`) with the fitted values written.
    model : `ModelDef`
        The fitted model.
    bands : sequence of `str`
        Bands, in the order of ``images``.
    detections : `numpy.ndarray`
        ``(n, 2)`` catalogue positions (NaN rows are skipped).
    sigmas : `numpy.ndarray`
        ``(n,)`` observed size sigma of each object (pixels).
    resolved : `numpy.ndarray`
        ``(n,)`` whether each object is resolved (see `shape_collapsed`).
    labels : `numpy.ndarray`
        ``(n,)`` footprint labels (0: none).
    images : sequence of `BandImage` or `None`
        Band images (`None`: missing).
    footprints : `numpy.ndarray` or `None`
        Label image aligned with the images.
    reff_min : `float`
        Lower bound of ``reff`` (pixels) of the fit.

    Returns
    -------
    masks : `numpy.ndarray`
        ``(n,)`` flag mask (`lsst.galmix.schema.FlagSet` bits) per row; 0 where the fit is plausible.
    """
    shaped = [c for c in model.components if c.has_shape]
    placed = np.flatnonzero(placeable(detections))
    present = [im for im in images if im is not None]
    masks = np.zeros(len(detections), dtype=np.int64)
    if len(placed) == 0:
        return masks
    tree = cKDTree(detections[placed])
    boxes = find_objects(footprints) if footprints is not None else []
    for i in placed:
        found: list[str] = []
        det = (float(detections[i, 0]), float(detections[i, 1]))
        fitted = (float(table[param_column(model, "x")][i]), float(table[param_column(model, "y")][i]))
        if model.free_centroid and np.isfinite(fitted).all():
            # The two catalogue objects nearest the fitted centre: one of them may be this object.
            _, idx = tree.query(fitted, k=min(2, len(placed)))
            near = [placed[j] for j in np.atleast_1d(idx) if placed[j] != i][:1]
            if centroid_moved(det, fitted, float(sigmas[i]), detections[near]):
                found.append("centroid_moved")
        if shape_collapsed([table[param_column(model, "q", c)][i] for c in shaped],
                           [table[param_column(model, "reffPix", c)][i] for c in shaped], bool(resolved[i]), reff_min):
            found.append("shape_collapsed")
        fluxes = [float(table[flux_column(model, band)][i]) for band in bands]
        if present and np.isfinite(fluxes).any():
            radius = max(3.0, 2.0 * float(sigmas[i]))
            label = int(labels[i])
            own = None
            if footprints is not None and 0 < label <= len(boxes) and boxes[label - 1] is not None:
                own = (boxes[label - 1], footprints[boxes[label - 1]] == label)
            neighbours = [placed[j] for j in tree.query_ball_point(det, 2 * radius + 1) if placed[j] != i]
            ap = aperture(present[0].image.shape, present[0].origin, det, radius, detections[neighbours], own)
            for flux, im in zip(fluxes, images):
                if ap is None or im is None or not np.isfinite(flux):
                    continue
                if flux_excess(flux, *aperture_sums(im.image, im.variance, im.bad, ap)):
                    found.append("flux_excess")
                    break
        for flag in found:
            masks[i] |= flag_bit(flag)
    return masks

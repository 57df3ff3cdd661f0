"""Adaptive second moments of one object on a cutout (GalSim HSM), with a footprint-moment fallback."""

from __future__ import annotations

__all__ = ("DetectionMoments", "measure_moments")

import dataclasses

import galsim
import numpy as np


@dataclasses.dataclass(frozen=True)
class DetectionMoments:
    """Centroid and second moments of an object.

    Attributes
    ----------
    x, y
        Centroid, in the pixel frame of the input arrays plus their offset.
    xx, yy, xy
        Second moments, pixel^2.
    ok
        True if the adaptive moments converged; False for the footprint-moment fallback.
    """

    x: float
    y: float
    xx: float
    yy: float
    xy: float
    ok: bool


def _footprint_moments(image: np.ndarray, footprint: np.ndarray, x0: int, y0: int) -> DetectionMoments:
    yy, xx = np.nonzero(footprint)
    w = np.clip(image[yy, xx], 0.0, None)
    if not np.sum(w) > 0:
        w = np.ones(len(xx))
    w = w / w.sum()
    cx, cy = np.sum(w * xx), np.sum(w * yy)
    mxx = np.sum(w * (xx - cx) ** 2) + 1.0 / 12.0
    myy = np.sum(w * (yy - cy) ** 2) + 1.0 / 12.0
    mxy = np.sum(w * (xx - cx) * (yy - cy))
    return DetectionMoments(cx + x0, cy + y0, mxx, myy, mxy, ok=False)


def measure_moments(
    image: np.ndarray,
    usable: np.ndarray,
    footprint: np.ndarray,
    x0: int,
    y0: int,
    guess_sigma: float,
) -> DetectionMoments:
    """Measure adaptive moments on a cutout, falling back to flux-weighted footprint moments.

    Parameters
    ----------
    image
        Cutout of the (detection) image.
    usable
        True where pixels may be used (not masked, not owned by another object).
    footprint
        True on the object's own footprint pixels (used for the guess and the fallback).
    x0, y0
        Position of the cutout's first pixel in the output frame.
    guess_sigma
        Initial Gaussian sigma, pixels.

    Returns
    -------
    moments : `DetectionMoments`
        Adaptive moments if they converge with a centroid inside the footprint's box, else the
        footprint moments with ``ok=False``.
    """
    fallback = _footprint_moments(image, footprint, x0, y0)
    gs_image = galsim.ImageD(np.where(usable, image, 0.0).astype(np.float64), xmin=0, ymin=0)
    badpix = galsim.ImageI((~usable).astype(np.int32), xmin=0, ymin=0)
    guess = galsim.PositionD(fallback.x - x0, fallback.y - y0)
    result = galsim.hsm.FindAdaptiveMom(
        gs_image, badpix=badpix, guess_sig=guess_sigma, guess_centroid=guess, strict=False
    )
    if result.moments_status != 0 or not np.isfinite(result.moments_sigma) or result.moments_sigma <= 0:
        return fallback
    cx, cy = result.moments_centroid.x, result.moments_centroid.y
    ys, xs = np.nonzero(footprint)
    if not (xs.min() - 0.5 <= cx <= xs.max() + 0.5 and ys.min() - 0.5 <= cy <= ys.max() + 0.5):
        return fallback
    e1, e2 = result.observed_shape.e1, result.observed_shape.e2
    e2sum = e1**2 + e2**2
    if e2sum >= 1.0:
        return fallback
    s2 = result.moments_sigma**2 / np.sqrt(1.0 - e2sum)
    return DetectionMoments(cx + x0, cy + y0, s2 * (1.0 + e1), s2 * (1.0 - e1), s2 * e2, ok=True)

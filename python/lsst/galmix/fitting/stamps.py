"""Cutting fitting stamps (data + inverse-variance weights) from numpy image, variance and mask arrays.

Pixels that must not enter the fit get zero weight, never a special value: masked pixels, pixels with a
non-finite value, and pixels with zero, negative or non-finite variance. Each reason sets a flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .flags import FlagSet

__all__ = ["Exclusion", "Stamp", "cut_box", "cut_stamp", "weights_from_variance"]

Exclusion = Callable[[int, int, tuple[int, int]], "np.ndarray | None"]
"""``(x0, y0, (ny, nx)) -> bool array``: pixels of that absolute box to give zero weight (no flag)."""


@dataclass
class Stamp:
    """Pixels of one band around one object.

    Attributes
    ----------
    image : `numpy.ndarray`
        Data, float64 ``[ny, nx]`` (zero where the weight is zero).
    weight : `numpy.ndarray`
        Inverse variance, float64 ``[ny, nx]``; zero for pixels excluded from the fit.
    x0, y0 : `int`
        Absolute (tract) pixel coordinates of ``image[0, 0]``.
    flags : `FlagSet`
        ``nan_pixels``, ``bad_variance``, ``masked_pixels``, ``edge``, ``no_data`` as found.
    """

    image: np.ndarray
    weight: np.ndarray
    x0: int
    y0: int
    flags: FlagSet = field(default_factory=FlagSet)

    @property
    def n_pix(self) -> int:
        """Number of pixels with non-zero weight."""
        return int(np.count_nonzero(self.weight))

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.image.shape  # type: ignore[return-value]


def weights_from_variance(
    image: np.ndarray, variance: np.ndarray, bad: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, FlagSet]:
    """Inverse-variance weights with bad pixels set to zero weight.

    Parameters
    ----------
    image, variance : `numpy.ndarray`
        Data and variance, same shape.
    bad : `numpy.ndarray` of `bool`, optional
        True for masked pixels.

    Returns
    -------
    data : `numpy.ndarray`
        float64 copy of the image with zero-weight pixels set to 0.
    weight : `numpy.ndarray`
        float64 inverse variance; 0 where excluded.
    flags : `FlagSet`
        ``nan_pixels``, ``bad_variance``, ``masked_pixels``, ``no_data``.
    """
    data = np.array(image, dtype=np.float64)
    var = np.asarray(variance, dtype=np.float64)
    if var.shape != data.shape or (bad is not None and np.shape(bad) != data.shape):
        raise ValueError(f"image {data.shape}, variance {var.shape} and mask shapes differ")
    flags = FlagSet()
    nan_pix = ~np.isfinite(data)
    bad_var = ~(np.isfinite(var) & (var > 0))
    masked = np.zeros(data.shape, bool) if bad is None else np.asarray(bad, bool)
    flags.set("nan_pixels", bool(nan_pix.any()))
    flags.set("bad_variance", bool(bad_var.any()))
    flags.set("masked_pixels", bool(masked.any()))
    good = ~(nan_pix | bad_var | masked)
    weight = np.zeros(data.shape)
    weight[good] = 1.0 / var[good]
    data[~good] = 0.0
    flags.set("no_data", not good.any())
    return data, weight, flags


def cut_stamp(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray | None,
    origin: tuple[int, int],
    center: tuple[float, float],
    half_size: int,
    exclude: Exclusion | None = None,
) -> Stamp:
    """Cut a square stamp around a position.

    Parameters
    ----------
    image, variance : `numpy.ndarray`
        Full-image data and variance ``[NY, NX]``.
    bad : `numpy.ndarray` of `bool` or `None`
        Full-image mask, True = do not use.
    origin : `tuple` [`int`, `int`]
        Absolute ``(x, y)`` of ``image[0, 0]``.
    center : `tuple` [`float`, `float`]
        Absolute ``(x, y)`` of the object.
    half_size : `int`
        The stamp spans ``round(center) +- half_size`` (clipped to the image; ``edge`` flag if clipped).
    exclude : callable, optional
        `Exclusion`: pixels to give zero weight without a flag (e.g. pixels owned by other objects'
        footprints); called with the clipped box only, so it never touches the full image.

    Returns
    -------
    stamp : `Stamp`
        The stamp; ``no_data`` set if it has no usable pixel (including a centre off the image).

    Raises
    ------
    ValueError
        If ``center`` is not finite (a catalogue position of NaN cannot place a stamp).
    """
    if not np.isfinite(center).all():
        raise ValueError(f"Stamp centre (x, y) = {tuple(center)} is not finite")
    ix = int(np.floor(center[0] - origin[0] + 0.5))
    iy = int(np.floor(center[1] - origin[1] + 0.5))
    return cut_box(image, variance, bad, origin,
                   (ix - half_size + origin[0], iy - half_size + origin[1]),
                   (ix + half_size + 1 + origin[0], iy + half_size + 1 + origin[1]), exclude)


def cut_box(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray | None,
    origin: tuple[int, int],
    start: tuple[int, int],
    stop: tuple[int, int],
    exclude: Exclusion | None = None,
) -> Stamp:
    """Cut the absolute pixel box ``[start, stop)`` (x, y), clipped to the image.

    Parameters are as for `cut_stamp`, with ``start`` and ``stop`` the absolute ``(x, y)`` corners.
    """
    ny, nx = image.shape
    xa, ya = int(start[0]) - origin[0], int(start[1]) - origin[1]
    xb, yb = int(stop[0]) - origin[0], int(stop[1]) - origin[1]
    cxa, cxb, cya, cyb = max(xa, 0), min(xb, nx), max(ya, 0), min(yb, ny)
    if cxa >= cxb or cya >= cyb:
        flags = FlagSet()
        flags.set("no_data")
        flags.set("edge")
        return Stamp(np.zeros((0, 0)), np.zeros((0, 0)), origin[0] + xa, origin[1] + ya, flags)
    sl = (slice(cya, cyb), slice(cxa, cxb))
    data, weight, flags = weights_from_variance(image[sl], variance[sl], None if bad is None else bad[sl])
    ex = None if exclude is None else exclude(origin[0] + cxa, origin[1] + cya, data.shape)
    if ex is not None:
        ex = np.asarray(ex, bool)
        weight[ex] = 0.0
        data[ex] = 0.0
        flags.set("no_data", not weight.any())
    flags.set("edge", (cxa, cxb, cya, cyb) != (xa, xb, ya, yb))
    return Stamp(data, weight, origin[0] + cxa, origin[1] + cya, flags)

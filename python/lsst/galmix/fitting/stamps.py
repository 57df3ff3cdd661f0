"""Cutting fitting stamps (data + inverse-variance weights) from numpy image, variance and mask arrays,
and the stamp-size rule.

Pixels that must not enter the fit get zero weight, never a special value: masked pixels, pixels with a
non-finite value, and pixels with zero, negative or non-finite variance. Each reason sets a flag.

Stamp size (settings of `lsst.galmix.fitting.config.SourceFitConfig`): a first stamp of ``stamp_sigmas``
observed (PSF-convolved, adaptive-moment) sigma along each axis, at least ``stamp_min`` and at most ``stamp_max`` pixels
from the centre. After the first fit the stamp grows (`required_half_size`) until the fitted model's light
beyond its edge is below ``stamp_flux_fraction`` of the source's flux, or the model's surface brightness at
the edge is below ``stamp_edge_noise`` of the pixel noise (no pixel further out would carry information),
up to ``stamp_max`` and the object's footprint; the fit is then repeated on the larger stamp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import engine as ge
from ..schema import FlagSet

__all__ = [
    "VARIANCE_FLOOR", "Exclusion",
    "Stamp",
    "background_pixels", "cut_box", "cut_stamp", "required_half_size",
    "weighted_pixels", "weights_from_variance",
]

VARIANCE_FLOOR = 1e-6
"""Pixels with variance below this fraction of the median variance of their stamp get zero weight
(``bad_variance``): real noise never varies by a factor 1000 in sigma within a stamp."""

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
        ``nan_pixels``, ``bad_variance`` (zero, negative, non-finite or below `VARIANCE_FLOOR` times the
        median variance), ``masked_pixels``, ``no_data``.
    """
    data = np.array(image, dtype=np.float64)
    var = np.asarray(variance, dtype=np.float64)
    if var.shape != data.shape or (bad is not None and np.shape(bad) != data.shape):
        raise ValueError(f"image {data.shape}, variance {var.shape} and mask shapes differ")
    flags = FlagSet()
    nan_pix = ~np.isfinite(data)
    bad_var = ~(np.isfinite(var) & (var > 0))
    any_bad_var = bool(bad_var.any())
    if not bad_var.all():
        # A pixel whose variance is orders of magnitude below its neighbours' would carry the whole fit
        # (its weight swamps every other pixel): it is a bad variance, not a measurement. The median is
        # needed only when some variance is below the floor times the largest (the median's upper bound).
        # Without a bad variance the good ones are all of ``var`` (no copy; the same min, max and median).
        good_var = var[~bad_var] if any_bad_var else var
        if good_var.min() < VARIANCE_FLOOR * good_var.max():
            bad_var |= var < VARIANCE_FLOOR * np.median(good_var)
            any_bad_var = bool(bad_var.any())
    masked = None if bad is None else np.asarray(bad, bool)
    any_nan = bool(nan_pix.any())
    any_masked = masked is not None and bool(masked.any())
    flags.set("nan_pixels", any_nan)
    flags.set("bad_variance", any_bad_var)
    flags.set("masked_pixels", any_masked)
    if not (any_nan or any_bad_var or any_masked):
        # Every pixel is good (the usual stamp): the general branch below would give the same arrays.
        flags.set("no_data", data.size == 0)
        return data, 1.0 / var, flags
    good = ~(nan_pix | bad_var if masked is None else nan_pix | bad_var | masked)
    if good.all():
        weight = 1.0 / var
    else:
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

    Raises
    ------
    ValueError
        If a corner is not finite.
    """
    if not np.isfinite([*start, *stop]).all():
        raise ValueError(f"Stamp box corners {tuple(start)}, {tuple(stop)} are not finite")
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


def weighted_pixels(image: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``image`` and ``weight`` (same shape) at the pixels of positive weight, in row-major
    order (``image[weight > 0]``, ``weight[weight > 0]``).

    Where every pixel has weight (the usual stamp) these are flat views of the C-contiguous arrays, not
    copies: the same values in the same order, so reductions over them give the same bits.
    """
    if weight.size and image.flags.c_contiguous and weight.flags.c_contiguous and weight.min() > 0:
        return image.ravel(), weight.ravel()
    use = weight > 0
    return image[use], weight[use]


def required_half_size(
    gaussians: np.ndarray, noise: float, flux_fraction: float, edge_noise: float, limit: int,
) -> tuple[int, int]:
    """Half-sizes along x and y (pixels from the source centre) a stamp needs to hold one source's model.

    Parameters
    ----------
    gaussians : `numpy.ndarray`
        ``(G, 6)`` PSF-convolved Gaussians ``(flux, x, y, xx, xy, yy)`` of the source in one band.
    noise : `float`
        Typical pixel noise (sigma) of that band.
    flux_fraction : `float`
        Largest fraction of the model light allowed beyond the edges (half of it beyond each pair).
    edge_noise : `float`
        An edge may also stop where the model surface brightness on it falls below this times ``noise``.
    limit : `int`
        Largest half-size returned.

    Returns
    -------
    half_x, half_y : `int`
        Per axis, the smallest half-size meeting either condition, at most ``limit``; ``(0, 0)`` for a
        mixture with a non-finite value or without positive flux.

    Notes
    -----
    Both bounds use each Gaussian's variance along the axis (``xx`` for the edges ``x = +-R``): the light
    of a Gaussian beyond ``|x| > R`` is at most ``exp(-R^2 / (2 xx))`` (its 1-d marginal's two tails), and
    its surface brightness on the line ``x = R`` at most ``peak exp(-R^2 / (2 xx))`` (the quadratic form
    is smallest there at ``R^2 / xx``). An elongated galaxy so gets the box of its ellipse, not the square
    of its major axis. The engine computes it (`lsst.galmix.engine.stamp_half_sizes`): one call instead
    of the ~20 numpy calls of a pass over the radii, which cost ~0.1 ms per fitted source.
    """
    return ge.stamp_half_sizes(np.asarray(gaussians, float), float(noise), float(flux_fraction),
                                 float(edge_noise), int(limit))


_ROUND_COV = (4.0, 0.0, 4.0)
"""Covariance terms ``(xx, xy, yy)`` of a source without an observed covariance in `background_pixels`."""


def background_pixels(weight: np.ndarray, x0: int, y0: int, centres: np.ndarray, covs: list,
                      sigmas: float = 3.0) -> np.ndarray:
    """Weighted pixels farther than ``sigmas`` observed sigma from every source of a stamp (bool mask).

    Parameters
    ----------
    weight : `numpy.ndarray`
        The stamp's weights (``[ny, nx]``, 0 = unused).
    x0, y0 : `int`
        Absolute coordinates of ``weight[0, 0]``.
    centres : `numpy.ndarray`
        ``(N, 2)`` source centres.
    covs : `list` [`numpy.ndarray` or `None`]
        Observed covariance of each source (`None`: a round sigma of 2 pixels).
    sigmas : `float`
        Mahalanobis radius of the region each source covers.

    Notes
    -----
    The engine computes the mask (`lsst.galmix.engine.background_mask`), testing each source only on
    the pixels within ``sigmas`` times its major-axis sigma: the sky tests ask for it after every fit, in
    every band and at two radii, and the numpy form cost ~0.1 ms per fitted source.
    """
    terms = np.array([_ROUND_COV if c is None else (c[0][0], c[0][1], c[1][1]) for c in covs], float)
    return ge.background_mask(weight, int(x0), int(y0), np.asarray(centres, float).reshape(-1, 2),
                              terms.reshape(-1, 3), float(sigmas))

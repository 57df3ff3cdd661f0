"""Adapt lsst-images `CellCoadd` objects of one patch to the arrays `detect_patch` works on."""

from __future__ import annotations

__all__ = ("NoCoaddError", "patch_images_from_coadds")

from collections.abc import Callable, Mapping

import numpy as np

from lsst.images.cells import CellCoadd

from .detect import PatchImages
from .image import BandCombination

MASK_PLANES_USED = ("BAD", "SAT", "NO_DATA", "EDGE")


class NoCoaddError(ValueError):
    """No coadd was given, or none of the given loaders could read one."""


def patch_images_from_coadds(
    coadds: Mapping[str, CellCoadd | Callable[[], CellCoadd | None]],
) -> PatchImages:
    """Collect the arrays, masks and PSF of one patch's coadds (one per band).

    The coadds are visited one band at a time: of each, only a float32 copy of the image and a boolean
    usable-pixel plane are kept, its variance goes into the running inverse-variance combination and its
    mask planes into the OR over bands, so that a coadd given as a loader is released before the next
    band is read. A 4k x 4k patch then needs about 5 bytes per pixel and band plus 33 for the combination
    and masks, instead of the 10 bytes per pixel and band of the coadds themselves.

    Parameters
    ----------
    coadds
        Coadds of the same patch keyed by band, or zero-argument callables that read them (and return
        `None` for a band that cannot be read, which is then left out).

    Returns
    -------
    images : `PatchImages`
        Arrays in the tract frame, with ``goods``, ``combined`` and ``masks`` filled (``variances`` and
        ``planes`` are empty); the smoothing kernel is the mean of the bands' unit-sum kernel images at
        the patch centre.

    Raises
    ------
    NoCoaddError
        If no coadd is given, or none could be read.
    ValueError
        If the coadds' boxes differ.
    """
    images: dict[str, np.ndarray] = {}
    goods: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    kernels = []
    combination = None
    for band, source in coadds.items():
        coadd = source if isinstance(source, CellCoadd) else source()
        if coadd is None:
            continue
        if combination is None:
            bbox, patch = coadd.bbox, coadd.patch
            inner = patch.inner_bbox
            xc = (inner.x.start + inner.x.stop - 1) // 2
            yc = (inner.y.start + inner.y.stop - 1) // 2
            projection = coadd.sky_projection
            combination = BandCombination(np.shape(coadd.image.array))
        elif coadd.bbox != bbox:
            raise ValueError(f"Coadd of band {band} covers {coadd.bbox}, not {bbox} like the others.")
        k = np.asarray(coadd.psf.compute_kernel_image(x=xc, y=yc).array, dtype=np.float64)
        kernels.append(k / k.sum())
        # A copy, so that nothing of the coadd outlives this iteration (same dtype: float32 pixels).
        image = np.array(coadd.image.array, copy=True)
        names = set(coadd.mask.schema.names)
        good = np.isfinite(image)
        for name in MASK_PLANES_USED:
            if name not in names:
                continue
            plane = coadd.mask.get(name)
            if name in ("BAD", "NO_DATA"):
                good &= ~plane
            if name in masks:
                masks[name] |= plane
            else:
                masks[name] = np.array(plane, dtype=bool)
            del plane
        combination.add(image, coadd.variance.array, good)
        images[band], goods[band] = image, good
        del coadd, image, good
    if combination is None:
        raise NoCoaddError("Detection needs at least one readable coadd.")

    def pixel_to_sky(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sky = projection.pixel_to_sky(x=np.asarray(x, float), y=np.asarray(y, float))
        return np.asarray(sky.ra.deg), np.asarray(sky.dec.deg)

    return PatchImages(
        patch=patch.id,
        x0=bbox.x.start,
        y0=bbox.y.start,
        inner=(inner.x.start, inner.x.stop, inner.y.start, inner.y.stop),
        images=images,
        variances={},
        planes={},
        kernel=np.mean(kernels, axis=0),
        pixel_to_sky=pixel_to_sky,
        goods=goods,
        combined=combination.result(),
        masks=masks,
    )

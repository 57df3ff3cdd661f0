"""Adapt lsst-images `CellCoadd` objects of one patch to the arrays `detect_patch` works on."""

from __future__ import annotations

__all__ = ("patch_images_from_coadds",)

from collections.abc import Mapping

import numpy as np

from lsst.images.cells import CellCoadd

from .detect import PatchImages

MASK_PLANES_USED = ("BAD", "SAT", "NO_DATA", "EDGE")


def patch_images_from_coadds(coadds: Mapping[str, CellCoadd]) -> PatchImages:
    """Collect the arrays, masks and PSF of one patch's coadds (one per band).

    Parameters
    ----------
    coadds
        Coadds of the same patch keyed by band.

    Returns
    -------
    images : `PatchImages`
        Arrays in the tract frame; the smoothing kernel is the mean of the bands' unit-sum kernel
        images at the patch centre.

    Raises
    ------
    ValueError
        If no coadd is given or their boxes differ.
    """
    if not coadds:
        raise ValueError("Detection needs at least one coadd.")
    first = next(iter(coadds.values()))
    bbox = first.bbox
    for band, coadd in coadds.items():
        if coadd.bbox != bbox:
            raise ValueError(f"Coadd of band {band} covers {coadd.bbox}, not {bbox} like the others.")
    patch = first.patch
    inner = patch.inner_bbox
    xc = (inner.x.start + inner.x.stop - 1) // 2
    yc = (inner.y.start + inner.y.stop - 1) // 2
    kernels = []
    for coadd in coadds.values():
        k = np.asarray(coadd.psf.compute_kernel_image(x=xc, y=yc).array, dtype=np.float64)
        kernels.append(k / k.sum())
    projection = first.sky_projection

    def pixel_to_sky(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sky = projection.pixel_to_sky(x=np.asarray(x, float), y=np.asarray(y, float))
        return np.asarray(sky.ra.deg), np.asarray(sky.dec.deg)

    planes = {
        band: {name: coadd.mask.get(name) for name in MASK_PLANES_USED if name in coadd.mask.schema.names}
        for band, coadd in coadds.items()
    }
    return PatchImages(
        patch=patch.id,
        x0=bbox.x.start,
        y0=bbox.y.start,
        inner=(inner.x.start, inner.x.stop, inner.y.start, inner.y.stop),
        # Views of the coadd pixels (float32): a 4k x 4k patch in six bands would double in float64.
        images={b: c.image.array for b, c in coadds.items()},
        variances={b: c.variance.array for b, c in coadds.items()},
        planes=planes,
        kernel=np.mean(kernels, axis=0),
        pixel_to_sky=pixel_to_sky,
    )

"""Cut a patch out of a rendered tract band and package it as an lsst-images `CellCoadd`."""

from __future__ import annotations

__all__ = ("make_cell_coadd", "mask_schema")

import astropy.units as u
import numpy as np

from lsst.images import Image, Mask, MaskPlane, MaskSchema
from lsst.images.cells import CellCoadd, CellGridBounds, CellPointSpreadFunction

from ..data.skymap import TractGeometry
from .render import MASK_PLANES, TractBandImage


def mask_schema() -> MaskSchema:
    """Return the mask schema of the simulated coadds (planes of `MASK_PLANES`)."""
    return MaskSchema([MaskPlane(name, doc) for name, doc in MASK_PLANES.items()])


def make_cell_coadd(rendered: TractBandImage, geometry: TractGeometry, patch: int) -> CellCoadd:
    """Build the CellCoadd of one patch from a rendered tract band.

    Parameters
    ----------
    rendered
        Tract-wide pixels and PSF kernels of one band (`render_band`).
    geometry
        Tract geometry.
    patch
        Patch id.

    Returns
    -------
    coadd : `lsst.images.cells.CellCoadd`
        Image (nJy), variance (nJy^2) and mask over the patch outer box, in the tract frame, with the
        per-cell PSF kernels of the patch's cells and its `PatchDefinition`. ``EDGE`` marks pixels
        within half a PSF kernel of the patch's outer boundary.
    """
    definition = geometry.patch_definition(patch)
    outer = definition.outer_bbox
    ys, xs = outer.y.slice_within(geometry.bbox.y), outer.x.slice_within(geometry.bbox.x)
    projection = geometry.sky_projection
    image = Image(rendered.image[ys, xs].copy(), bbox=outer, unit=u.nJy, sky_projection=projection)
    variance = Image(rendered.variance[ys, xs].copy(), bbox=outer, unit=u.nJy**2)
    schema = mask_schema()
    mask = Mask(schema=schema, bbox=outer)
    for name, plane in rendered.planes.items():
        mask.set(name, plane[ys, xs])
    edge = np.ones(outer.shape, dtype=bool)
    half = geometry.size.psf_size // 2
    edge[half:-half, half:-half] = False
    mask.set("EDGE", edge)
    c = geometry.size.cell_size
    kernels = rendered.psf_kernels[
        outer.y.start // c : outer.y.stop // c, outer.x.start // c : outer.x.stop // c
    ].copy()
    psf = CellPointSpreadFunction(kernels, CellGridBounds(grid=definition.cells, bbox=outer))
    return CellCoadd(
        image,
        mask=mask,
        variance=variance,
        sky_projection=projection,
        band=rendered.band,
        psf=psf,
        patch=definition,
    )

"""Geometry of the galmix simulation skymap: one TAN tract split into overlapping patches of cells.

The layout follows the LSST cell-based skymaps: patch inner regions tile the tract without overlap,
each patch's outer region is its inner region grown by a border of whole cells, and the cell grids of
all patches are aligned on one tract-wide grid, so a cell (and its PSF) is the same in every patch
that contains it. The tract bounding box is the union of the patch outer boxes and starts at (0, 0).
"""

from __future__ import annotations

__all__ = ("PIXEL_SCALE_ARCSEC", "SIZES", "SKYMAP_NAME", "SimSize", "TractGeometry", "sky_polygon")

import dataclasses
import hashlib
from collections.abc import Iterator

import astropy.wcs
import numpy as np

from lsst.images import YX, Box, SkyProjection, TractFrame
from lsst.images.cells import CellGrid, PatchDefinition
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

SKYMAP_NAME = "galmix_sim"
PIXEL_SCALE_ARCSEC = 0.2


@dataclasses.dataclass(frozen=True)
class SimSize:
    """Size preset of a simulated repository.

    Parameters
    ----------
    name
        Preset name (``ci``, ``small``, ``medium``).
    n_patches_x, n_patches_y
        Number of patches along x and y in the tract.
    patch_inner
        Side of a patch inner region, pixels (a multiple of ``cell_size``).
    patch_border
        Width of the overlap border on each side of a patch, pixels (a multiple of ``cell_size``).
    cell_size
        Side of a cell, pixels (LSST uses 150).
    psf_size
        Side of the stored PSF kernel images, pixels (odd).
    """

    name: str
    n_patches_x: int
    n_patches_y: int
    patch_inner: int
    patch_border: int
    cell_size: int
    psf_size: int = 33

    def __post_init__(self) -> None:
        if self.patch_inner % self.cell_size or self.patch_border % self.cell_size:
            raise ValueError(
                f"Size {self.name!r}: patch inner size {self.patch_inner} and border {self.patch_border} "
                f"must be multiples of the cell size {self.cell_size}."
            )
        if self.n_patches_x < 1 or self.n_patches_y < 1 or self.patch_inner < 1:
            raise ValueError(f"Size {self.name!r}: needs at least one patch of positive size.")
        if self.psf_size % 2 == 0:
            raise ValueError(f"Size {self.name!r}: the PSF kernel size must be odd, not {self.psf_size}.")


SIZES: dict[str, SimSize] = {
    # 2x2 patches of 400x400 pixels (300 inner + 50 border) in 50-pixel cells: CI in seconds.
    "ci": SimSize("ci", 2, 2, patch_inner=300, patch_border=50, cell_size=50),
    # 2x2 patches of 1200x1200 pixels in LSST-size 150-pixel cells.
    "small": SimSize("small", 2, 2, patch_inner=900, patch_border=150, cell_size=150),
    # About one LSST patch: 4050x4050 pixels (3750 inner + 150 border each side).
    "medium": SimSize("medium", 1, 1, patch_inner=3750, patch_border=150, cell_size=150),
}


def sky_polygon(wcs: astropy.wcs.WCS, bbox: Box) -> ConvexPolygon:
    """Return the sky polygon through the outer pixel corners of a box.

    Parameters
    ----------
    wcs
        FITS WCS whose 0-based pixel coordinates are tract pixels.
    bbox
        Pixel box (tract frame).

    Returns
    -------
    polygon : `lsst.sphgeom.ConvexPolygon`
        Polygon with the four corners of the box (pixel edges at +-0.5).
    """
    x0, x1 = bbox.x.start - 0.5, bbox.x.stop - 0.5
    y0, y1 = bbox.y.start - 0.5, bbox.y.stop - 0.5
    ra, dec = wcs.pixel_to_world_values(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
    return ConvexPolygon(
        [UnitVector3d(LonLat.fromDegrees(float(r), float(d))) for r, d in zip(ra, dec, strict=True)]
    )


@dataclasses.dataclass(frozen=True)
class TractGeometry:
    """One tract of the simulation skymap: WCS, patches and cells.

    Parameters
    ----------
    size
        Layout preset.
    tract
        Tract id.
    ra, dec
        Tract centre (ICRS degrees), the tangent point of the TAN projection.
    pixel_scale
        Pixel scale, arcsec.
    skymap
        Skymap name.
    """

    size: SimSize
    tract: int = 0
    ra: float = 55.0
    dec: float = -30.0
    pixel_scale: float = PIXEL_SCALE_ARCSEC
    skymap: str = SKYMAP_NAME

    @property
    def nx(self) -> int:
        """Tract width in pixels (`int`)."""
        return self.size.n_patches_x * self.size.patch_inner + 2 * self.size.patch_border

    @property
    def ny(self) -> int:
        """Tract height in pixels (`int`)."""
        return self.size.n_patches_y * self.size.patch_inner + 2 * self.size.patch_border

    @property
    def bbox(self) -> Box:
        """Tract bounding box, starting at (0, 0) (`lsst.images.Box`)."""
        return Box.factory[0 : self.ny, 0 : self.nx]

    @property
    def n_patches(self) -> int:
        """Number of patches in the tract (`int`)."""
        return self.size.n_patches_x * self.size.n_patches_y

    @property
    def area_arcmin2(self) -> float:
        """Area of the tract bounding box, arcmin^2 (`float`)."""
        return self.nx * self.ny * (self.pixel_scale / 60.0) ** 2

    @property
    def hash(self) -> bytes:
        """Hash of the skymap parameters, for the ``skymap`` dimension record (`bytes`)."""
        text = repr((self.skymap, self.size, self.ra, self.dec, self.pixel_scale))
        return hashlib.sha1(text.encode()).digest()

    @property
    def wcs(self) -> astropy.wcs.WCS:
        """TAN WCS whose 0-based pixel coordinates are tract pixels (`astropy.wcs.WCS`)."""
        wcs = astropy.wcs.WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [self.ra, self.dec]
        # FITS CRPIX is 1-based: the tangent point is at the tract centre in 0-based pixels.
        wcs.wcs.crpix = [(self.nx - 1) / 2.0 + 1.0, (self.ny - 1) / 2.0 + 1.0]
        scale = self.pixel_scale / 3600.0
        wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
        wcs.wcs.cunit = ["deg", "deg"]
        wcs.wcs.radesys = "ICRS"
        wcs.wcs.set()
        return wcs

    @property
    def frame(self) -> TractFrame:
        """lsst-images pixel frame of the tract (`lsst.images.TractFrame`)."""
        return TractFrame(skymap=self.skymap, tract=self.tract, bbox=self.bbox)

    @property
    def sky_projection(self) -> SkyProjection[TractFrame]:
        """lsst-images projection of the tract frame (`lsst.images.SkyProjection`)."""
        return SkyProjection.from_fits_wcs(self.wcs, self.frame, pixel_bounds=self.bbox, x0=0, y0=0)

    @property
    def region(self) -> ConvexPolygon:
        """Sky region of the tract (`lsst.sphgeom.ConvexPolygon`)."""
        return sky_polygon(self.wcs, self.bbox)

    def patch_ids(self) -> Iterator[int]:
        """Iterate over the patch ids (``iy * n_patches_x + ix``)."""
        yield from range(self.n_patches)

    def patch_index(self, patch: int) -> YX[int]:
        """Return the (y, x) index of a patch in the tract's patch grid.

        Parameters
        ----------
        patch
            Patch id.
        """
        if not 0 <= patch < self.n_patches:
            raise ValueError(f"Patch {patch} is not in tract {self.tract} (0 <= patch < {self.n_patches}).")
        return YX(y=patch // self.size.n_patches_x, x=patch % self.size.n_patches_x)

    def patch_inner_bbox(self, patch: int) -> Box:
        """Return the inner (non-overlapping) bounding box of a patch, tract pixels.

        Parameters
        ----------
        patch
            Patch id.
        """
        index = self.patch_index(patch)
        s, b = self.size.patch_inner, self.size.patch_border
        return Box.factory[b + index.y * s : b + (index.y + 1) * s, b + index.x * s : b + (index.x + 1) * s]

    def patch_outer_bbox(self, patch: int) -> Box:
        """Return the outer bounding box (inner grown by the border) of a patch, tract pixels.

        Parameters
        ----------
        patch
            Patch id.
        """
        inner = self.patch_inner_bbox(patch)
        b = self.size.patch_border
        return Box.factory[inner.y.start - b : inner.y.stop + b, inner.x.start - b : inner.x.stop + b]

    def patch_definition(self, patch: int) -> PatchDefinition:
        """Return the lsst-images definition of a patch (ids, inner box, cell grid).

        Parameters
        ----------
        patch
            Patch id.
        """
        cells = CellGrid(
            bbox=self.patch_outer_bbox(patch), cell_shape=YX(self.size.cell_size, self.size.cell_size)
        )
        return PatchDefinition(
            id=patch, index=self.patch_index(patch), inner_bbox=self.patch_inner_bbox(patch), cells=cells
        )

    def patch_region(self, patch: int) -> ConvexPolygon:
        """Return the sky region of a patch's outer box (`lsst.sphgeom.ConvexPolygon`).

        Parameters
        ----------
        patch
            Patch id.
        """
        return sky_polygon(self.wcs, self.patch_outer_bbox(patch))

    def inner_patch_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return the id of the patch whose inner region contains each position (-1 outside all).

        Parameters
        ----------
        x, y
            Tract pixel positions (pixel centres at integers).
        """
        ix = np.floor((np.asarray(x) + 0.5 - self.size.patch_border) / self.size.patch_inner).astype(int)
        iy = np.floor((np.asarray(y) + 0.5 - self.size.patch_border) / self.size.patch_inner).astype(int)
        ok = (ix >= 0) & (ix < self.size.n_patches_x) & (iy >= 0) & (iy < self.size.n_patches_y)
        return np.where(ok, iy * self.size.n_patches_x + ix, -1)

    @property
    def n_cells_x(self) -> int:
        """Number of cells across the tract (`int`)."""
        return self.nx // self.size.cell_size

    @property
    def n_cells_y(self) -> int:
        """Number of cells up the tract (`int`)."""
        return self.ny // self.size.cell_size

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the tract-wide (i, j) = (row, column) cell index of positions.

        Parameters
        ----------
        x, y
            Tract pixel positions; rounded to the nearest pixel, as
            `CellPointSpreadFunction.compute_kernel_image` does.
        """
        c = self.size.cell_size
        i = np.clip(np.floor((np.round(np.asarray(y))) / c).astype(int), 0, self.n_cells_y - 1)
        j = np.clip(np.floor((np.round(np.asarray(x))) / c).astype(int), 0, self.n_cells_x - 1)
        return i, j

    def cell_center(self, i: int, j: int) -> tuple[float, float]:
        """Return the (x, y) tract pixel position of the centre of tract-wide cell (i, j).

        Parameters
        ----------
        i, j
            Cell row and column.
        """
        c = self.size.cell_size
        return (j * c + (c - 1) / 2.0, i * c + (c - 1) / 2.0)

    def pixel_to_sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Convert tract pixels to ICRS (ra, dec) degrees.

        Parameters
        ----------
        x, y
            Tract pixel positions.
        """
        ra, dec = self.wcs.pixel_to_world_values(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        return np.asarray(ra), np.asarray(dec)

    def sky_to_pixel(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Convert ICRS (ra, dec) degrees to tract pixels.

        Parameters
        ----------
        ra, dec
            Sky positions, degrees.
        """
        x, y = self.wcs.world_to_pixel_values(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
        return np.asarray(x), np.asarray(y)

"""Multi-band detection and deblending of one patch (numpy/photutils; no Butler)."""

from __future__ import annotations

__all__ = ("DetectionConfig", "DetectionResult", "PatchImages", "detect_patch", "usable_pixels")

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
from astropy.table import Table
from photutils.segmentation import deblend_sources, detect_sources
from photutils.utils.exceptions import NoDetectionsWarning
from scipy.ndimage import binary_dilation

import lsst.pex.config as pexConfig

from ..schema import OBJECT_ID_STRIDE, detection_flag_column, init_flux_column, object_columns
from .image import BandCombination, smoothed_significance
from .moments import measure_moments


class DetectionConfig(pexConfig.Config):
    """Settings of `detect_patch`."""

    threshold = pexConfig.RangeField[float](
        doc="Detection threshold, sigma of the PSF-smoothed multi-band image", default=5.0, min=0.0,
        inclusiveMin=False,
    )
    n_pixels = pexConfig.RangeField[int](
        doc="Minimum number of connected pixels above threshold", default=5, min=1
    )
    deblend = pexConfig.Field[bool](
        doc="Split footprints with several peaks (photutils deblend_sources)", default=True
    )
    n_levels = pexConfig.RangeField[int](
        doc="Number of multi-thresholding levels of deblend_sources", default=32, min=1
    )
    contrast = pexConfig.RangeField[float](
        doc="Minimum flux fraction of a deblended child (deblend_sources)", default=0.005, min=0.0, max=1.0
    )


@dataclasses.dataclass
class PatchImages:
    """The arrays of one patch that detection needs.

    Attributes
    ----------
    patch
        Patch id.
    x0, y0
        Tract pixel position of the first array pixel (``bbox.start``).
    inner
        Inner region of the patch as ``(x_start, x_stop, y_start, y_stop)``, tract pixels.
    images, variances
        Per band, image (nJy) and variance (nJy^2) arrays ``[y, x]``.
    planes
        Per band, boolean arrays per mask plane name (``BAD``, ``SAT``, ``NO_DATA``, ``EDGE``).
    kernel
        PSF kernel used for smoothing (e.g. the mean of the bands' kernels at the patch centre).
    pixel_to_sky
        Maps tract pixel arrays (x, y) to (ra, dec) degrees.
    goods
        Optional, per band, True where the band's pixel is usable (finite, not ``BAD`` nor ``NO_DATA``);
        derived from ``images`` and ``planes`` when `None`.
    combined
        Optional ``(mean, variance, good)`` of `combine_bands` over all bands; computed from ``images``,
        ``variances`` and ``goods`` when `None` (``variances`` may then be empty).
    masks
        Optional OR over bands of each mask plane, by name; when given, `plane` reads it instead of
        ``planes`` (which may then be empty).
    """

    patch: int
    x0: int
    y0: int
    inner: tuple[int, int, int, int]
    images: dict[str, np.ndarray]
    variances: dict[str, np.ndarray]
    planes: dict[str, dict[str, np.ndarray]]
    kernel: np.ndarray
    pixel_to_sky: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    goods: dict[str, np.ndarray] | None = None
    combined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    masks: dict[str, np.ndarray] | None = None

    def plane(self, name: str) -> np.ndarray:
        """Return the OR over bands of one mask plane (all False if no band has it).

        Parameters
        ----------
        name
            Mask plane name.
        """
        shape = next(iter(self.images.values())).shape
        if self.masks is not None:
            return self.masks[name] if name in self.masks else np.zeros(shape, dtype=bool)
        result = np.zeros(shape, dtype=bool)
        for planes in self.planes.values():
            if name in planes:
                result |= planes[name]
        return result


@dataclasses.dataclass
class DetectionResult:
    """Output of `detect_patch`.

    Attributes
    ----------
    objects
        One row per deblended source (``galmix_objects`` columns).
    labels
        int32 footprint label image of the patch (0 = no object).
    significance
        The PSF-smoothed significance image that was thresholded.
    """

    objects: Table
    labels: np.ndarray
    significance: np.ndarray


def _parents(deblended: np.ndarray, original: np.ndarray, n_labels: int) -> np.ndarray:
    """Parent (original footprint) label of each deblended label, indexed by label."""
    parent = np.zeros(n_labels + 1, dtype=np.int64)
    sel = deblended > 0
    parent[deblended[sel]] = original[sel]
    return parent


def _empty_table(bands: list[str]) -> Table:
    table = Table()
    for name, (dtype, unit, doc) in object_columns(bands).items():
        table[name] = np.zeros(0, dtype=dtype)
        table[name].unit = unit
        table[name].description = doc
    return table


def usable_pixels(data: PatchImages) -> list[np.ndarray]:
    """Per band (in the order of ``data.images``), True where the pixel is finite, not BAD nor NO_DATA.

    Parameters
    ----------
    data
        The patch's images and per-band mask planes (``data.goods`` is returned as is when given).
    """
    if data.goods is not None:
        return [data.goods[band] for band in data.images]
    goods = [np.isfinite(data.images[b]) for b in data.images]
    for band, good_band in zip(data.images, goods, strict=True):
        for name in ("BAD", "NO_DATA"):
            if name in data.planes[band]:
                good_band &= ~data.planes[band][name]
    return goods


def detect_patch(data: PatchImages, config: DetectionConfig | None = None) -> DetectionResult:
    """Detect and deblend the sources of one patch on an inverse-variance weighted multi-band image.

    Parameters
    ----------
    data
        The patch's images, variances, masks and PSF kernel.
    config
        Detection parameters (default `DetectionConfig()`).

    Returns
    -------
    result : `DetectionResult`
        Object table (every detection is a row, with flags), label image, significance image.
    """
    config = config if config is not None else DetectionConfig()
    bands = list(data.images)
    goods = usable_pixels(data)
    if data.combined is not None:
        mean, variance, good = data.combined
    else:
        combination = BandCombination(data.images[bands[0]].shape)
        for band, good_band in zip(bands, goods, strict=True):
            combination.add(data.images[band], data.variances[band], good_band)
        mean, variance, good = combination.result()
    significance = smoothed_significance(mean, variance, data.kernel, good)
    # Only the mean image is used from here on; the variance is 8 bytes per pixel.
    del variance
    shape = mean.shape
    with warnings.catch_warnings():
        # An empty patch is a valid outcome (an empty table), not a warning.
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segm = detect_sources(significance, config.threshold, config.n_pixels, mask=~good)
    if segm is None:
        return DetectionResult(_empty_table(bands), np.zeros(shape, dtype=np.int32), significance)
    original = segm.data.copy()
    if config.deblend:
        # Deblend on log(significance): the contrast criterion then compares peaks rather than total
        # fluxes, so a galaxy next to a saturated star still gets its own footprint.
        compressed = np.log(np.maximum(significance, config.threshold) / config.threshold) + 1e-3
        segm = deblend_sources(
            compressed,
            segm,
            config.n_pixels,
            n_levels=config.n_levels,
            contrast=config.contrast,
        )
        del compressed
    deblended = segm.data
    n_labels = int(deblended.max())
    parent_of = _parents(deblended, original, n_labels)
    children_of: dict[int, list[int]] = {}
    for label in segm.labels:
        children_of.setdefault(int(parent_of[label]), []).append(int(label))

    no_data, edge_plane = data.plane("NO_DATA"), data.plane("EDGE")
    sat, bad_cols = data.plane("SAT"), data.plane("BAD")
    # A shared kernel sigma guess for the moments: the PSF's own second moment.
    k = data.kernel / data.kernel.sum()
    ky, kx = np.indices(k.shape)
    psf_sigma = float(np.sqrt(0.5 * np.sum(k * ((kx - kx.mean()) ** 2 + (ky - ky.mean()) ** 2))))
    slices = segm.slices
    label_index = {int(label): i for i, label in enumerate(segm.labels)}

    rows: list[dict] = []
    new_labels = np.zeros(shape, dtype=np.int32)
    running = 0
    for parent_label in sorted(children_of):
        children = children_of[parent_label]
        parent_id = 0
        if len(children) > 1:
            running += 1
            parent_id = data.patch * OBJECT_ID_STRIDE + running
        for label in children:
            running += 1
            sy, sx = slices[label_index[label]]
            pad = max(5, int(3 * psf_sigma))
            ys = slice(max(0, sy.start - pad), min(shape[0], sy.stop + pad))
            xs = slice(max(0, sx.start - pad), min(shape[1], sx.stop + pad))
            cut_labels = deblended[ys, xs]
            footprint = cut_labels == label
            usable = good[ys, xs] & ((cut_labels == 0) | footprint)
            moments = measure_moments(mean[ys, xs], usable, footprint, xs.start, ys.start, psf_sigma)
            # A label's pixels all lie within its slice, so the cutout's footprint is the whole of them.
            new_labels[ys, xs][footprint] = running
            ix, iy = int(np.round(moments.x)), int(np.round(moments.y))
            ix, iy = min(max(ix, 0), shape[1] - 1), min(max(iy, 0), shape[0] - 1)
            near = (slice(max(0, iy - 1), iy + 2), slice(max(0, ix - 1), ix + 2))
            fy, fx = np.nonzero(footprint)
            fy, fx = fy + ys.start, fx + xs.start
            # Masked pixels are not part of footprints, so look for them just around the footprint too.
            grown = binary_dilation(footprint, iterations=2)
            touches_border = (
                fy.min() == 0 or fx.min() == 0 or fy.max() == shape[0] - 1 or fx.max() == shape[1] - 1
            )
            row = {
                "objectId": data.patch * OBJECT_ID_STRIDE + running,
                "parentObjectId": parent_id,
                "nChild": len(children),
                "footprintLabel": running,
                "patch": data.patch,
                "x": moments.x + data.x0,
                "y": moments.y + data.y0,
                "shape_xx": moments.xx,
                "shape_yy": moments.yy,
                "shape_xy": moments.xy,
                detection_flag_column("edge"): bool(edge_plane[ys, xs][grown].any() or touches_border),
                detection_flag_column("no_data"): bool(no_data[ys, xs][grown].any()),
                detection_flag_column("saturated_center"): bool(sat[near].any()),
                detection_flag_column("bad_center"): bool(bad_cols[near].any()),
                detection_flag_column("moments_failed"): not moments.ok,
            }
            for band, good_band in zip(bands, goods, strict=True):
                pix = good_band[fy, fx]
                row[init_flux_column(band)] = float(np.sum(data.images[band][fy[pix], fx[pix]], dtype=np.float64))
            rows.append(row)

    table = _empty_table(bands) if not rows else Table()
    if rows:
        x = np.array([r["x"] for r in rows])
        y = np.array([r["y"] for r in rows])
        ra, dec = data.pixel_to_sky(x, y)
        x_start, x_stop, y_start, y_stop = data.inner
        rx, ry = np.round(x), np.round(y)
        inner = (rx >= x_start) & (rx < x_stop) & (ry >= y_start) & (ry < y_stop)
        extra = {"ra": ra, "dec": dec, "detect_isPatchInner": inner, "detect_isPrimary": inner}
        for name, (dtype, unit, doc) in object_columns(bands).items():
            values = extra[name] if name in extra else [r[name] for r in rows]
            table[name] = np.asarray(values, dtype=dtype)
            table[name].unit = unit
            table[name].description = doc
    return DetectionResult(table, new_labels, significance)

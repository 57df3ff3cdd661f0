"""Render the truth of one tract into noisy images of one band, with per-cell PSFs and defects.

The tract is rendered once per band and each patch cuts its outer box out of it, so the overlap of
two patches holds identical pixels (as in LSST coadds). Every object is drawn with the PSF of the
tract-wide cell containing its centre, which is also the kernel image stored for that cell.
"""

from __future__ import annotations

__all__ = ("MASK_PLANES", "TractBandImage", "render_band")

import dataclasses
from collections.abc import Callable

import galsim
import numpy as np
from astropy.table import Table

from ..data.repository import BANDS
from ..data.skymap import TractGeometry
from ..detection.image import smoothed_significance
from .observing import SATURATION_NJY, PsfField
from .truth import STAR

MASK_PLANES: dict[str, str] = {
    "BAD": "Pixel is unusable (bad column).",
    "SAT": "Pixel was saturated; its value is clipped at the saturation level.",
    "EDGE": "Pixel is within half a PSF kernel of the patch's outer edge.",
    "NO_DATA": "No input data covered this pixel; image and variance are NaN.",
    "DETECTED": "Pixel is above 5 sigma in this band's PSF-smoothed image.",
}
"""Mask planes of the simulated coadds (name -> description), in bit order."""

DETECTION_THRESHOLD = 5.0
MAX_STAMP_HALF = 200


@dataclasses.dataclass
class TractBandImage:
    """Rendered pixels of one band over the whole tract.

    Attributes
    ----------
    band
        Band name.
    image
        Pixel values, nJy, ``[y, x]`` over the tract bbox.
    variance
        Per-pixel variance, nJy^2.
    planes
        Boolean arrays per mask plane name (`MASK_PLANES`), except ``EDGE`` (patch-specific).
    psf_kernels
        Kernel images per tract-wide cell, shape ``(n_cells_y, n_cells_x, k, k)``.
    noise_sigma
        Nominal per-pixel noise sigma at the tract centre, nJy.
    """

    band: str
    image: np.ndarray
    variance: np.ndarray
    planes: dict[str, np.ndarray]
    psf_kernels: np.ndarray
    noise_sigma: float


def _stamp_half_size(row, band: str, psf_half: int, scale: float) -> int:
    if row["truth_type"] == STAR:
        # Bright stars need room for the Moffat wings above the noise.
        return psf_half if row[f"flux_{band}"] < 1e6 else 3 * psf_half
    half = max(psf_half, 8.0 * row["disk_reff"] / scale)
    if row[f"bulge_frac_{band}"] > 0:
        half = max(half, 20.0 * row["bulge_reff"] / scale)
    return int(min(np.ceil(half), MAX_STAMP_HALF))


def galaxy_profile(row, band: str) -> galsim.GSObject:
    """Return the unconvolved GalSim bulge+disk profile of a truth galaxy in one band.

    Parameters
    ----------
    row
        Truth row (`TRUTH_COLUMNS`).
    band
        Band name.
    """
    flux = row[f"flux_{band}"]
    bulge_frac = row[f"bulge_frac_{band}"]
    parts = []
    for cls, frac, (reff, q, pa) in (
        (galsim.DeVaucouleurs, bulge_frac, (row["bulge_reff"], row["bulge_q"], row["bulge_position_angle"])),
        (galsim.Exponential, 1.0 - bulge_frac, (row["disk_reff"], row["disk_q"], row["disk_position_angle"])),
    ):
        if frac <= 0:
            continue
        # GalSim's shear conserves area: the circular radius is reff_major * sqrt(q).
        profile = cls(half_light_radius=reff * np.sqrt(q), flux=flux * frac)
        parts.append(profile.shear(q=q, beta=pa * galsim.degrees))
    return parts[0] if len(parts) == 1 else galsim.Add(parts)


def _add_stamp(target: np.ndarray, stamp: np.ndarray, ix: int, iy: int, half: int) -> None:
    ny, nx = target.shape
    x0, y0 = ix - half, iy - half
    sx0, sy0 = max(0, -x0), max(0, -y0)
    tx0, ty0 = max(0, x0), max(0, y0)
    tx1, ty1 = min(nx, x0 + stamp.shape[1]), min(ny, y0 + stamp.shape[0])
    if tx1 <= tx0 or ty1 <= ty0:
        return
    target[ty0:ty1, tx0:tx1] += stamp[sy0 : sy0 + ty1 - ty0, sx0 : sx0 + tx1 - tx0]


def _defects(geometry: TractGeometry, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bad-column segments and the NO_DATA corner, shared by all bands."""
    rng = np.random.default_rng([seed, geometry.tract, 2])
    bad = np.zeros((geometry.ny, geometry.nx), dtype=bool)
    for _ in range(max(2, geometry.n_patches)):
        x = rng.integers(0, geometry.nx)
        length = rng.integers(geometry.ny // 8, geometry.ny // 3)
        y0 = rng.integers(0, geometry.ny - length)
        bad[y0 : y0 + length, x] = True
    yy, xx = np.ogrid[0 : geometry.ny, 0 : geometry.nx]
    # A triangle at the tract origin that reaches into the inner region of patch 0.
    leg = geometry.size.patch_border + 0.4 * geometry.size.patch_inner
    no_data = xx + yy < leg
    return bad, no_data


def render_band(
    truth: Table,
    geometry: TractGeometry,
    band: str,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> TractBandImage:
    """Render one band of the tract: objects, noise, defects, saturation and DETECTED.

    Parameters
    ----------
    truth
        Truth catalogue of the tract (`make_truth`).
    geometry
        Tract geometry.
    band
        Band name.
    seed
        Random seed of the noise (the defects depend on the seed only, not the band).
    progress
        Called as ``progress(done, total)`` while drawing objects.

    Returns
    -------
    rendered : `TractBandImage`
        Pixels, variance, mask planes and per-cell PSF kernel images.
    """
    size = geometry.size
    scale = geometry.pixel_scale
    psf_field = PsfField(geometry, band)
    k = size.psf_size
    cell_profiles = {}
    kernels = np.empty((geometry.n_cells_y, geometry.n_cells_x, k, k))
    for i in range(geometry.n_cells_y):
        for j in range(geometry.n_cells_x):
            cx, cy = geometry.cell_center(i, j)
            cell_profiles[i, j] = psf_field.profile(cx, cy)
            kernels[i, j] = cell_profiles[i, j].drawImage(nx=k, ny=k, scale=scale).array

    model = np.zeros((geometry.ny, geometry.nx), dtype=np.float64)
    ci, cj = geometry.cell_of(truth["x"], truth["y"])
    n = len(truth)
    for index, row in enumerate(truth):
        flux = row[f"flux_{band}"]
        if not flux > 0:
            continue
        psf = cell_profiles[int(ci[index]), int(cj[index])]
        ix, iy = int(np.round(row["x"])), int(np.round(row["y"]))
        half = _stamp_half_size(row, band, k // 2, scale)
        if row["truth_type"] == STAR:
            obj = psf.withFlux(flux)
        else:
            obj = galsim.Convolve(galaxy_profile(row, band), psf)
        stamp = galsim.ImageD(2 * half + 1, 2 * half + 1, scale=scale)
        obj.drawImage(image=stamp, offset=(row["x"] - ix, row["y"] - iy))
        _add_stamp(model, stamp.array, ix, iy, half)
        if progress is not None and (index % 500 == 0 or index == n - 1):
            progress(index + 1, n)

    sigma = psf_field.noise_sigma(k)
    yy, xx = np.ogrid[0 : geometry.ny, 0 : geometry.nx]
    # The number of contributing visits varies smoothly: +-10% in variance across the tract.
    depth_pattern = 1.0 + 0.1 * np.sin(2 * np.pi * xx / geometry.nx) * np.cos(np.pi * yy / geometry.ny)
    variance = sigma**2 * depth_pattern
    rng = np.random.default_rng([seed, geometry.tract, 3, BANDS.index(band)])
    image = model + rng.normal(size=model.shape) * np.sqrt(variance)

    bad, no_data = _defects(geometry, seed)
    saturated = model > SATURATION_NJY
    image[saturated] = SATURATION_NJY
    # Hot columns: a +20 sigma offset that only the BAD mask tells apart from sources.
    image[bad] += 20.0 * sigma
    image[no_data] = np.nan
    variance[no_data] = np.nan

    centre = kernels[geometry.n_cells_y // 2, geometry.n_cells_x // 2]
    significance = smoothed_significance(image, variance, centre, ~(bad | no_data | saturated))
    planes = {
        "BAD": bad,
        "SAT": saturated,
        "NO_DATA": no_data,
        "DETECTED": (significance > DETECTION_THRESHOLD) & ~no_data,
    }
    return TractBandImage(
        band=band,
        image=image.astype(np.float32),
        variance=variance.astype(np.float32),
        planes=planes,
        psf_kernels=kernels,
        noise_sigma=sigma,
    )

"""Fit the HSC g, r, i cutout around GAMA 79635 (../shared/data/hsc_gama79635) with galmix.

Real coadd pixels, masks, variance, PSF kernel images and WCS. Objects are the 92 rows of the HSC PDR3
catalogue in the field (positions from ra/dec through the WCS, starting shapes from the r-band
SdssShape moments); objects closer than ``--link`` pixels are grouped into blends (friends of
friends), fitted jointly (up to 5 children) or per child with neighbours subtracted. The central
spiral is split into several rows by the HSC catalogue and is not a magnitude reference (data README);
the comparison with HSC CModel magnitudes is for the other objects.

Run: ``python examples/hsc_gama79635.py [--model sersic] [--output table.fits]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.schema import flux_column

DATA = Path("/work/shared/data/hsc_gama79635")
STEM = "222.51551376,0.09749601"
BANDS = ("g", "r", "i")
PIXEL_SCALE = 0.168
NJY_PER_COUNT = 57.544  # FLUXMAG0 = 6.3096e10: AB zero point 27.0
BAD_PLANES = ("BAD", "SAT", "CR", "EDGE", "NO_DATA", "SUSPECT")


def load(data_dir: Path = DATA):
    """Images (nJy), variances, bad masks, PSF mixtures (4 Gaussians), WCS and the HSC catalogue."""
    images, psfs, wcs = {}, {}, None
    for band in BANDS:
        with fits.open(data_dir / f"{STEM}_300x300_{band}.fits") as hdul:
            image = hdul[1].data.astype(np.float64) * NJY_PER_COUNT
            mask = hdul[2].data
            variance = hdul[3].data.astype(np.float64) * NJY_PER_COUNT**2
            bits = sum(1 << hdul[2].header[f"MP_{plane}"] for plane in BAD_PLANES)
            wcs = wcs or WCS(hdul[1].header)
        images[band] = (image, variance, (mask & bits) != 0)
        fit = fit_psf_image(fits.getdata(data_dir / f"{STEM}_{band}_psf.fits").astype(np.float64), 4)
        psfs[band] = fit.mixture
    cat = Table.read(data_dir / "fithsc_src.csv", format="ascii.csv", comment=None,
                     header_start=0, data_start=1)
    cat.rename_columns(cat.colnames, [c.lstrip("# ").strip() for c in cat.colnames])
    return images, psfs, wcs, cat


def objects_table(cat: Table, wcs: WCS, link: float) -> Table:
    """galmix_objects-like table: positions, starting shapes and friends-of-friends blends."""
    x, y = wcs.all_world2pix(np.asarray(cat["ra"], float), np.asarray(cat["dec"], float), 0)
    scale2 = PIXEL_SCALE**2
    objects = Table({"objectId": np.asarray(cat["object_id"], np.int64), "x": x, "y": y,
                     "shape_xx": np.asarray(cat["r_sdssshape_shape11"], float) / scale2,
                     "shape_yy": np.asarray(cat["r_sdssshape_shape22"], float) / scale2,
                     "shape_xy": np.asarray(cat["r_sdssshape_shape12"], float) / scale2})
    group = np.arange(len(x))
    for i in range(len(x)):  # friends of friends (union by relabelling; 92 objects)
        for j in range(i + 1, len(x)):
            if np.hypot(x[i] - x[j], y[i] - y[j]) < link and group[i] != group[j]:
                group[group == group[j]] = group[i]
    sizes = np.bincount(group, minlength=len(x))
    objects["parentObjectId"] = np.where(sizes[group] > 1, group + 1, 0).astype(np.int64)
    return objects


def footprints(images, objects: Table, threshold: float = 3.0) -> np.ndarray:
    """A crude deblended segmentation: pixels above ``threshold`` sigma in r go to the nearest object.

    Stands in for the detection step (``galmix_footprints``); ``objects`` gets ``footprintLabel``.
    """
    image, variance, bad = images["r"]
    with np.errstate(invalid="ignore", divide="ignore"):
        detected = (image / np.sqrt(variance) > threshold) & ~bad
    yy, xx = np.nonzero(detected)
    d2 = (xx[:, None] - np.asarray(objects["x"])[None, :]) ** 2 + (yy[:, None] - np.asarray(objects["y"])[None, :]) ** 2
    labels = np.zeros(image.shape, np.int32)
    labels[yy, xx] = np.argmin(d2, axis=1) + 1
    objects["footprintLabel"] = np.arange(1, len(objects) + 1, dtype=np.int32)
    return labels


def aperture_mag(image: np.ndarray, x: float, y: float, radius: float = 10.0) -> float:
    """AB magnitude in a circular aperture minus the median of the 25-35 pixel annulus (local sky and
    the light of large neighbours), a model-free reference."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    r = np.hypot(xx - x, yy - y)
    annulus = (r > 25) & (r < 35)
    if not annulus.any() or not (r < radius).any():
        return np.nan
    flux = (image[r < radius] - np.median(image[annulus])).sum()
    return float(31.4 - 2.5 * np.log10(flux)) if flux > 0 else np.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="exp")
    parser.add_argument("--link", type=float, default=10.0, help="blend linking length (pixels)")
    parser.add_argument("--blend-mode", default="joint", choices=["joint", "subtract"])
    parser.add_argument("--footprint-only", action="store_true", help="fit only footprint pixels")
    parser.add_argument("--residual-threshold", type=float, default=SourceFitConfig().residual_threshold,
                        help="residual-source threshold in sigma (0: no search)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    images, psfs, wcs, cat = load()
    objects = objects_table(cat, wcs, args.link)

    def pixel_to_sky(x, y):
        return wcs.all_pix2world(x, y, 0)

    cfg = SourceFitConfig(pixel_scale=PIXEL_SCALE, blend_mode=args.blend_mode, footprint_only=args.footprint_only,
                          residual_threshold=args.residual_threshold)
    t0 = time.perf_counter()
    labels = footprints(images, objects)
    table = fit_patch(images, (0, 0), objects, labels, psfs, args.model, cfg, pixel_to_sky)
    elapsed = time.perf_counter() - t0
    m = args.model
    n_blend = int((objects["parentObjectId"] > 0).sum())
    print(f"{len(table)} objects ({n_blend} in blends) fitted with {m} in {elapsed:.1f} s; "
          f"fatal flags: {int(table[f'{m}_flag'].sum())}")
    for col in table.colnames:
        if col.startswith(f"{m}_") and col.endswith("_flag") and table[col].any():
            print(f"  {col}: {int(table[col].sum())}")
    good = ~table[f"{m}_flag"]
    dra = (table[f"{m}_ra"] - cat["ra"]) * 3600 * np.cos(np.radians(cat["dec"]))
    ddec = (table[f"{m}_dec"] - cat["dec"]) * 3600
    print(f"  position offset vs HSC: median |d| {np.nanmedian(np.hypot(dra, ddec)[good]):.3f} arcsec")
    mags = {}
    for band in BANDS:
        flux = np.asarray(table[flux_column(m, band)], float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mags[band] = 31.4 - 2.5 * np.log10(flux)
        ref = np.asarray(cat[f"{band}_cmodel_mag"], float)
        sel = good & np.isfinite(ref) & np.isfinite(mags[band]) & (ref < 24)
        d = mags[band][sel] - ref[sel]
        mad = 1.4826 * np.median(np.abs(d - np.median(d))) if sel.any() else np.nan
        print(f"  {band}: galmix - HSC CModel (mag < 24, N={int(sel.sum())}): median {np.median(d):+.3f}, "
              f"sigma_MAD {mad:.3f}")
    for b0, b1 in (("g", "r"), ("r", "i")):
        ref = np.asarray(cat[f"{b0}_cmodel_mag"], float) - np.asarray(cat[f"{b1}_cmodel_mag"], float)
        col = mags[b0] - mags[b1]
        sel = good & np.isfinite(ref) & np.isfinite(col) & (np.asarray(cat["r_cmodel_mag"], float) < 24)
        d = col[sel] - ref[sel]
        print(f"  {b0}-{b1} colour galmix - HSC CModel: median {np.median(d):+.3f} (N={int(sel.sum())})")
    print("  unflagged objects with an HSC CModel magnitude (r band):")
    print("     x      y   CModel    Kron  aperture(r<10px)  galmix")
    image = images["r"][0]
    for i in np.flatnonzero(good & np.isfinite(np.asarray(cat["r_cmodel_mag"], float))):
        x, y = float(objects["x"][i]), float(objects["y"][i])
        print(f"  {x:6.1f} {y:6.1f} {cat['r_cmodel_mag'][i]:7.2f} {cat['r_kronflux_mag'][i]:7.2f}"
              f" {aperture_mag(image, x, y):10.2f} {mags['r'][i]:14.2f}")
    if args.output:
        table.write(args.output, overwrite=True)


if __name__ == "__main__":
    main()

"""DC2-like truth catalogue of one tract: bulge+disk galaxies, stars on a stellar locus, close pairs.

Galaxy r-band number counts follow ``N(<m) = N_27 10^(0.31 (m - 27))`` per arcmin^2 between r = 18
and 27 (``N_27`` = 60 by default: DC2-like slope, thinned so a 4000x4000 patch holds ~10^4 objects);
disk sizes shrink with magnitude (0.7 arcsec at r = 21, 0.25 dex scatter), bulges are 0.25-0.6 times
the disk size; bulges are red and disks blue, so galaxies have colour gradients. Stars sit on an
approximate SDSS stellar locus; each patch gets a bright saturated star.
"""

from __future__ import annotations

__all__ = ("TRUTH_COLUMNS", "TruthConfig", "make_truth")

import dataclasses

import numpy as np
from astropy.table import Table

from ..data.repository import BANDS
from ..data.skymap import TractGeometry
from .halflight import composite_half_light_radius
from .observing import mag_to_flux

GALAXY, STAR = 1, 2

# name -> (dtype, unit, description); the bands expand the "{band}" entries. Declared once here.
TRUTH_COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "id": ("int64", None, "Truth object id, unique within the tract."),
    "ra": ("float64", "deg", "Right ascension (ICRS)."),
    "dec": ("float64", "deg", "Declination (ICRS)."),
    "x": ("float64", "pix", "Tract pixel x of the centre."),
    "y": ("float64", "pix", "Tract pixel y of the centre."),
    "flux_{band}": ("float64", "nJy", "True total flux in band {band}."),
    "is_pointsource": ("bool", None, "True for stars."),
    "truth_type": ("int32", None, "1 galaxy, 2 star."),
    "is_unique_truth_entry": ("bool", None, "True: one entry per object (DC2 convention)."),
    "redshift": ("float64", None, "Redshift (0 for stars)."),
    "bulge_reff": ("float64", "arcsec", "Bulge (de Vaucouleurs) half-light radius, major axis."),
    "disk_reff": ("float64", "arcsec", "Disk (exponential) half-light radius, major axis."),
    "bulge_q": ("float64", None, "Bulge axis ratio b/a."),
    "disk_q": ("float64", None, "Disk axis ratio b/a."),
    "bulge_position_angle": ("float64", "deg", "Bulge major-axis position angle, counter-clockwise from +x."),
    "disk_position_angle": ("float64", "deg", "Disk major-axis position angle, counter-clockwise from +x."),
    "bulge_frac_{band}": ("float64", None, "Bulge fraction of the band-{band} flux."),
    "reff": (
        "float64",
        "arcsec",
        (
            "True r-band half-light radius of the whole galaxy: semi-major axis of the ellipse (axis "
            "ratio and angle of the component dominating the r flux) enclosing half the unconvolved light."
        ),
    ),
}

# Component colours relative to r (mag), at z = 0; both redden with redshift.
_BULGE_COLOUR = {"u": 2.5, "g": 0.80, "r": 0.0, "i": -0.40, "z": -0.65, "y": -0.80}
_DISK_COLOUR = {"u": 1.30, "g": 0.40, "r": 0.0, "i": -0.20, "z": -0.30, "y": -0.35}
_COLOUR_REDSHIFT = {"u": 0.5, "g": 0.3, "r": 0.0, "i": -0.15, "z": -0.25, "y": -0.3}


@dataclasses.dataclass(frozen=True)
class TruthConfig:
    """Parameters of the truth catalogue.

    Parameters
    ----------
    galaxy_density
        Galaxies per arcmin^2 brighter than r = 27.
    mag_bright, mag_faint
        r-band magnitude range of the galaxies.
    count_slope
        Slope of log10 N(<m).
    star_density
        Stars per arcmin^2 with 17 < r < 26.
    pair_fraction
        Fraction of galaxies given a close companion 0.6-2 arcsec away.
    """

    galaxy_density: float = 60.0
    mag_bright: float = 18.0
    mag_faint: float = 27.0
    count_slope: float = 0.31
    star_density: float = 4.0
    pair_fraction: float = 0.08


def _galaxy_mags(rng: np.random.Generator, n: int, config: TruthConfig) -> np.ndarray:
    c = 10.0 ** (-config.count_slope * (config.mag_faint - config.mag_bright))
    u = rng.uniform(size=n)
    return config.mag_faint + np.log10(c + u * (1.0 - c)) / config.count_slope


def _galaxies(rng: np.random.Generator, mag_r: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float):
    n = len(mag_r)
    z = np.clip((0.15 + 0.12 * (mag_r - 18.0)) * np.exp(0.25 * rng.normal(size=n)), 0.02, 3.0)
    disk_reff = np.clip(0.7 * 10 ** (-0.12 * (mag_r - 21.0) + 0.25 * rng.normal(size=n)), 0.06, 6.0)
    bulge_reff = disk_reff * rng.uniform(0.25, 0.6, size=n)
    kind = rng.uniform(size=n)
    bf_r = np.where(kind < 0.35, 0.0, np.where(kind < 0.45, rng.uniform(0.6, 1.0, n), rng.beta(2, 5, n)))
    cos_i = rng.uniform(size=n)
    disk_q = np.sqrt(cos_i**2 * (1 - 0.2**2) + 0.2**2)
    bulge_q = rng.uniform(0.6, 1.0, size=n)
    disk_pa = rng.uniform(0.0, 180.0, size=n)
    bulge_pa = np.mod(disk_pa + rng.normal(0.0, 10.0, size=n), 180.0)
    flux_r = mag_to_flux(mag_r)
    zc = np.minimum(z, 1.2)
    cols: dict[str, np.ndarray] = {}
    for band in BANDS:
        # Colours are relative to r, so r itself gets no scatter: flux_r and bf_r are exact.
        scatter = 0.0 if band == "r" else 1.0
        shift = _COLOUR_REDSHIFT[band] * zc
        bulge_mag = _BULGE_COLOUR[band] + shift + scatter * 0.08 * rng.normal(size=n)
        disk_mag = _DISK_COLOUR[band] + shift + scatter * 0.1 * rng.normal(size=n)
        bulge = bf_r * flux_r * mag_to_flux(31.4 + bulge_mag)
        disk = (1 - bf_r) * flux_r * mag_to_flux(31.4 + disk_mag)
        cols[f"flux_{band}"] = bulge + disk
        cols[f"bulge_frac_{band}"] = bulge / (bulge + disk)
    dominant_bulge = bf_r > 0.5
    ap_q = np.where(dominant_bulge, bulge_q, disk_q)
    ap_pa = np.radians(np.where(dominant_bulge, bulge_pa, disk_pa))
    # A single-component galaxy's half-light ellipse is its own: only composites need the integral.
    reff = np.where(dominant_bulge, bulge_reff, disk_reff)
    both = (bf_r > 0) & (bf_r < 1)
    reff[both] = composite_half_light_radius(
        [bf_r[both], 1 - bf_r[both]],
        [4.0, 1.0],
        [bulge_reff[both], disk_reff[both]],
        [bulge_q[both], disk_q[both]],
        [np.radians(bulge_pa[both]), np.radians(disk_pa[both])],
        ap_q[both],
        ap_pa[both],
    )
    cols.update(
        x=x,
        y=y,
        redshift=z,
        bulge_reff=bulge_reff,
        disk_reff=disk_reff,
        bulge_q=bulge_q,
        disk_q=disk_q,
        bulge_position_angle=bulge_pa,
        disk_position_angle=disk_pa,
        reff=reff,
        truth_type=np.full(n, GALAXY),
    )
    return cols


def _stars(rng: np.random.Generator, mag_r: np.ndarray, x: np.ndarray, y: np.ndarray):
    n = len(mag_r)
    # Approximate SDSS stellar locus parametrised by g - r (Covey et al. 2007 shape).
    gr = rng.uniform(0.25, 1.45, size=n)
    ug = np.minimum(0.75 + 1.15 * gr, 2.7) + 0.05 * rng.normal(size=n)
    ri = np.where(gr < 1.1, 0.38 * gr - 0.07, 0.35 + 1.8 * (gr - 1.1)) + 0.03 * rng.normal(size=n)
    iz = 0.5 * ri + 0.01 + 0.02 * rng.normal(size=n)
    zy = 0.25 * ri + 0.02 * rng.normal(size=n)
    rel = {"u": ug + gr, "g": gr, "r": 0.0 * gr, "i": -ri, "z": -ri - iz, "y": -ri - iz - zy}
    cols: dict[str, np.ndarray] = {f"flux_{b}": mag_to_flux(mag_r + rel[b]) for b in BANDS}
    # Stars have no structure: NaN in every bulge and disk column.
    nan = np.full(n, np.nan)
    cols.update({t.format(band=b): nan for t in TRUTH_COLUMNS if t.startswith(("bulge_", "disk_")) for b in BANDS})
    cols.update(x=x, y=y, redshift=np.zeros(n), reff=np.zeros(n), truth_type=np.full(n, STAR))
    return cols


def make_truth(geometry: TractGeometry, seed: int, config: TruthConfig | None = None) -> Table:
    """Draw the truth catalogue of one tract.

    Parameters
    ----------
    geometry
        Tract geometry (area, WCS, patches).
    seed
        Random seed; the catalogue is a deterministic function of ``seed`` and the geometry.
    config
        Population parameters (default `TruthConfig()`).

    Returns
    -------
    truth : `astropy.table.Table`
        One row per object with the columns of `TRUTH_COLUMNS` (units and descriptions set);
        galaxies have ``reff`` from the exact composite profile, stars have ``reff`` = 0 and NaN
        structure.
    """
    config = config if config is not None else TruthConfig()
    rng = np.random.default_rng([seed, geometry.tract, 1])
    area = geometry.area_arcmin2
    lo_x, hi_x = -0.5, geometry.nx - 0.5
    lo_y, hi_y = -0.5, geometry.ny - 0.5

    n_gal = rng.poisson(config.galaxy_density * area)
    mag = _galaxy_mags(rng, n_gal, config)
    gx, gy = rng.uniform(lo_x, hi_x, n_gal), rng.uniform(lo_y, hi_y, n_gal)
    n_pair = rng.binomial(n_gal, config.pair_fraction)
    host = rng.choice(n_gal, size=n_pair, replace=False) if n_pair else np.zeros(0, int)
    sep = rng.uniform(0.6, 2.0, n_pair) / geometry.pixel_scale
    angle = rng.uniform(0, 2 * np.pi, n_pair)
    px = np.clip(gx[host] + sep * np.cos(angle), lo_x, hi_x)
    py = np.clip(gy[host] + sep * np.sin(angle), lo_y, hi_y)
    pmag = np.minimum(mag[host] + rng.uniform(0.0, 2.0, n_pair), config.mag_faint)
    galaxies = _galaxies(
        rng,
        np.concatenate([mag, pmag]),
        np.concatenate([gx, px]),
        np.concatenate([gy, py]),
        geometry.pixel_scale,
    )

    n_star = rng.poisson(config.star_density * area)
    smag = rng.uniform(17.0, 26.0, n_star)
    # One bright star per patch, inside its inner region, so that every patch has saturated pixels.
    bright_x, bright_y = [], []
    for patch in geometry.patch_ids():
        inner = geometry.patch_inner_bbox(patch)
        bright_x.append(rng.uniform(inner.x.start + 40, inner.x.stop - 40))
        bright_y.append(rng.uniform(inner.y.start + 40, inner.y.stop - 40))
    smag = np.concatenate([smag, rng.uniform(14.5, 15.5, geometry.n_patches)])
    sx = np.concatenate([rng.uniform(lo_x, hi_x, n_star), bright_x])
    sy = np.concatenate([rng.uniform(lo_y, hi_y, n_star), bright_y])
    stars = _stars(rng, smag, sx, sy)

    n = len(galaxies["x"]) + len(stars["x"])
    table = Table()
    merged = {k: np.concatenate([galaxies[k], stars[k]]) for k in galaxies}
    ra, dec = geometry.pixel_to_sky(merged["x"], merged["y"])
    merged.update(
        id=np.arange(1, n + 1, dtype=np.int64),
        ra=ra,
        dec=dec,
        is_pointsource=merged["truth_type"] == STAR,
        is_unique_truth_entry=np.ones(n, dtype=bool),
    )
    for template, (dtype, unit, description) in TRUTH_COLUMNS.items():
        for band in BANDS if "{band}" in template else [None]:
            name = template.format(band=band)
            table[name] = np.asarray(merged[name], dtype=dtype)
            table[name].unit = unit
            table[name].description = description.format(band=band)
    return table

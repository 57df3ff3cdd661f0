"""Model misfit of the shared-shape Sersic against the simulation's bulge + disk galaxies (colour gradients).

Draws the truth catalogue of a simulated tract (`lsst.galmix.sim.truth.make_truth`, the ``--size`` and
``--seed`` of ``galmix-make-repo``), keeps galaxies with ``r < --mag-max`` (a random ``--n`` of them),
re-renders each one alone on a grid with the simulation's profiles (`lsst.galmix.sim.render.galaxy_profile`)
and Moffat PSFs at the nominal FWHM of every band, without noise, and fits them with ``fit_patch``
(Sersic, ``misfit_flux_fraction = 0``, PSF mixtures of 4 Gaussians fitted to the kernels). Per band it
prints the noiseless relative flux error of galaxies at statistical S/N >= 10 (rms, for pure disks and for
bulge + disk), the misfit per unit resolution ``R`` (`lsst.galmix.fitting.misfit.resolution`): rms, 68th
percentile and sigma_MAD, over all and over ``R >= 0.1``: the measurement behind
``SourceFitConfig.misfit_flux_fraction``. With ``--noise SEED`` the same galaxies are also fitted with noise
at the simulated depths, and the flux chi sigma_MAD per S/N bin is printed without and with the term
(``--fraction``). Run: ``.venv/bin/python benchmarks/bench_misfit.py [--size medium] [--n 2000]
[--noise 1]`` (about 1 CPU minute per 1000 galaxies and fit).
"""

from __future__ import annotations

import argparse

import galsim
import numpy as np
from astropy.table import Table
from lsst.galmix.analysis.stats import sigma_mad
from lsst.galmix.data.repository import BANDS
from lsst.galmix.data.skymap import SIZES, TractGeometry
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.misfit import psf_half_light_radius, resolution
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.sim.observing import BAND_CONDITIONS, PSF_BETA, mag_to_flux
from lsst.galmix.sim.render import _stamp_half_size, galaxy_profile
from lsst.galmix.sim.truth import GALAXY, make_truth

SCALE = 0.2
KERNEL = 33
CELL = 128


def band_psf(band: str):
    """GalSim PSF, its 4-Gaussian mixture and the pixel noise of the band's simulated depth."""
    prof = galsim.Moffat(beta=PSF_BETA, fwhm=BAND_CONDITIONS[band].psf_fwhm)
    kern = prof.drawImage(nx=KERNEL, ny=KERNEL, scale=SCALE).array
    unit = kern / kern.sum()
    sigma = float(mag_to_flux(BAND_CONDITIONS[band].depth5) / (5.0 * np.sqrt(1.0 / np.sum(unit**2))))
    return prof, fit_psf_image(kern, n_gauss=4).mixture, sigma


def render(truth: Table, bands, noise_seed: int | None):
    """Images (one galaxy per grid cell), PSF mixtures and the objects table."""
    n = len(truth)
    ng = int(np.ceil(np.sqrt(n)))
    rng = np.random.default_rng(12345)
    xs = (np.arange(n) % ng) * CELL + CELL // 2 + rng.uniform(-0.5, 0.5, n)
    ys = (np.arange(n) // ng) * CELL + CELL // 2 + rng.uniform(-0.5, 0.5, n)
    shape = (ng * CELL, ng * CELL)
    images, psfs = {}, {}
    for k, band in enumerate(bands):
        prof, mix, sigma = band_psf(band)
        img = np.zeros(shape)
        for j, row in enumerate(truth):
            half = min(_stamp_half_size(row, band, KERNEL // 2, SCALE), CELL // 2 - 1)
            ix, iy = int(np.round(xs[j])), int(np.round(ys[j]))
            stamp = galsim.ImageD(2 * half + 1, 2 * half + 1, scale=SCALE)
            galsim.Convolve(galaxy_profile(row, band), prof).drawImage(image=stamp, offset=(xs[j] - ix, ys[j] - iy))
            img[iy - half : iy + half + 1, ix - half : ix + half + 1] += stamp.array
        if noise_seed is not None:
            img += np.random.default_rng([noise_seed, k]).normal(size=shape) * sigma
        images[band] = (img, np.full(shape, sigma**2), np.zeros(shape, bool))
        psfs[band] = mix
    return images, psfs, Table({"objectId": np.arange(1, n + 1), "x": xs, "y": ys})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="medium", choices=list(SIZES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n", type=int, default=2000, help="Galaxies fitted (a random subset)")
    parser.add_argument("--mag-max", type=float, default=24.5, help="Faintest r magnitude kept")
    parser.add_argument("--noise", type=int, default=None, help="Also fit with noise of this seed")
    parser.add_argument("--fraction", type=float, default=0.02, help="misfit_flux_fraction for --noise")
    args = parser.parse_args()

    truth = make_truth(TractGeometry(SIZES[args.size]), args.seed)
    mag_r = 31.4 - 2.5 * np.log10(np.asarray(truth["flux_r"]))
    keep = np.flatnonzero((truth["truth_type"] == GALAXY) & (mag_r < args.mag_max) & (truth["disk_reff"] < 2.5))
    rng = np.random.default_rng(0)
    truth = truth[np.sort(rng.choice(keep, min(args.n, keep.size), replace=False))]
    bands = list(BANDS)
    cfg = SourceFitConfig()
    cfg.misfit_flux_fraction = 0.0
    images, psfs, objects = render(truth, bands, None)
    fit = fit_patch(images, (0, 0), objects, None, psfs, "sersic", cfg)
    ok = ~np.asarray(fit["sersic_flag"])
    eta = np.log(1.0 / np.clip(np.asarray(fit["sersic_q"], float), 1e-12, 1.0))
    ln_reff = np.log(np.asarray(fit["sersic_reffPix"], float))
    composite = np.asarray(truth["bulge_frac_r"]) > 0
    print(f"{len(truth)} galaxies (r < {args.mag_max}), {ok.sum()} unflagged noiseless fits")
    all_rel, all_r = [], []
    per_band_r = {}
    for band in bands:
        r_psf = psf_half_light_radius(psfs[band])
        res = np.array([resolution(a, e, 0.0, r_psf) for a, e in zip(ln_reff, eta)])
        per_band_r[band] = res
        true = np.asarray(truth[f"flux_{band}"], float)
        flux, err = np.asarray(fit[f"{band}_sersicFlux"], float), np.asarray(fit[f"{band}_sersicFluxErr"], float)
        rel = (flux - true) / true
        use = ok & (true / err >= 10) & np.isfinite(rel)
        disk, comp = use & ~composite, use & composite
        print(f"{band}: N = {use.sum():5d}, PSF r_hl {r_psf:.2f} pix, median R {np.median(res[use]):.2f}; "
              f"noiseless rms dmag (mmag) pure disks {1e3 * np.sqrt(np.mean(rel[disk] ** 2)):.1f}, "
              f"bulge + disk {1e3 * np.sqrt(np.mean(rel[comp] ** 2)):.1f}")
        all_rel.append(rel[use])
        all_r.append(res[use])
    rel, res = np.concatenate(all_rel), np.concatenate(all_r)
    for lo in (0.0, 0.1):
        s = res >= max(lo, 1e-3)
        x = np.abs(rel[s] / res[s])
        print(f"misfit per unit R, R >= {lo}: N = {s.sum()}, rms {np.sqrt(np.mean(x**2)):.4f}, "
              f"68th percentile {np.percentile(x, 68.27):.4f}, sigma_MAD {sigma_mad(rel[s] / res[s]):.4f}")
    if args.noise is None:
        return
    images, psfs, objects = render(truth, bands, args.noise)
    noisy = fit_patch(images, (0, 0), objects, None, psfs, "sersic", cfg)
    ok = ~np.asarray(noisy["sersic_flag"])
    print(f"flux chi sigma_MAD with noise (seed {args.noise}), without / with the term (fraction {args.fraction}):")
    for band in bands:
        true = np.asarray(truth[f"flux_{band}"], float)
        flux, err = np.asarray(noisy[f"{band}_sersicFlux"], float), np.asarray(noisy[f"{band}_sersicFluxErr"], float)
        total = np.hypot(err, args.fraction * per_band_r[band] * np.abs(flux))
        snr = flux / total
        cells = []
        for lo, hi in ((10, np.inf), (10, 30), (30, 100), (100, np.inf)):
            s = ok & (snr >= lo) & (snr < hi)
            cells.append(f"S/N {lo}-{hi:g} N={s.sum()} {sigma_mad((flux[s] - true[s]) / err[s]):.2f} / "
                         f"{sigma_mad((flux[s] - true[s]) / total[s]):.2f}")
        print(f"  {band}: " + "; ".join(cells))


if __name__ == "__main__":
    main()

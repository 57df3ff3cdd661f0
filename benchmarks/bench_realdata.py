"""galmix against pyimfit on real galaxy stamps: Sersic fits with a free flat sky, same pixels, same PSF.

Stamps (provenance in ../shared/realdata/README.md and ../shared/data/README.md): the ten HST/ACS COSMOS
F814W stamps of paltas and COSMOS 100533 of GalSim (PSF: GalSim's ACS PSF images), two HSC galaxies of
pysersic (neighbours masked), the Legacy Surveys DR9 r-band spiral of pysersic, and the SDSS r-band
galaxy IC 3478 of Imfit. Per galaxy the script fits

- galmix with its defaults (stamp rule, sky ``"auto"``, residual-source search) on the whole cutout;
- galmix with its first stamp covering the whole cutout and a free flat sky (``whole``);
- pyimfit (exact Sersic convolved with the same PSF image, plus ``FlatSky``) on the whole cutout, with
  the same noise map and mask, started from the galmix whole-stamp fit's moments-independent start
  (n = 2, r_e and ellipse from adaptive moments);

and prints the differences galmix - pyimfit (``dn``, ``dln r_e``, ``dmag``), the residual sources galmix
added and whether any lies inside its galaxy's half-light ellipse, and the times (pyimfit the peer, not the
truth). Run: ``.venv/bin/python benchmarks/bench_realdata.py``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.moments import adaptive_moments
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from scipy.special import gamma, gammaincinv

ROOT = Path(__file__).resolve().parents[2] / "shared"  # shared/ beside the checkout
if not ROOT.exists():
    ROOT = Path("/work/shared")


@dataclass
class RealStamp:
    """One real galaxy: image, 1-sigma noise map, mask (True = exclude), PSF image, centre guess."""

    name: str
    image: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    psf: np.ndarray
    x: float
    y: float


def _centre(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Brightest pixel of the smoothed image within the central half of the stamp (the target)."""
    from scipy.ndimage import gaussian_filter

    sm = gaussian_filter(np.where(mask, 0.0, image), 2.0)
    ny, nx = image.shape
    inner = np.zeros(image.shape, bool)
    inner[ny // 4 : 3 * ny // 4, nx // 4 : 3 * nx // 4] = True
    iy, ix = np.unravel_index(np.argmax(np.where(inner, sm, -np.inf)), image.shape)
    return float(ix), float(iy)


def load_stamps() -> list[RealStamp]:
    """The real stamps of the benchmark."""
    out = []
    rd = ROOT / "realdata"
    psf_acs = fits.getdata(rd / "galsim_cosmos" / "real_galaxy_PSF_images.fits", 0).astype(float)
    cat = fits.getdata(rd / "paltas_cosmos" / "real_galaxy_catalog_23.5.fits", 1)
    with fits.open(rd / "paltas_cosmos" / "real_galaxy_images_23.5_n1.fits") as hdus:
        for row in cat:
            img = hdus[int(row["GAL_HDU"])].data.astype(float)
            mask = np.zeros(img.shape, bool)
            sig = np.full(img.shape, np.sqrt(float(row["NOISE_VARIANCE"])))
            out.append(RealStamp(f"cosmos{row['IDENT']}", img, sig, mask, psf_acs, *_centre(img, mask)))
    ex = fits.getdata(rd / "galsim_cosmos" / "real_galaxy_catalog_23.5_example.fits", 1)
    var = float(ex["NOISE_VARIANCE"][ex["IDENT"] == 100533][0])
    img = fits.getdata(rd / "galsim_cosmos" / "test_images.fits", 0).astype(float)
    psf = fits.getdata(rd / "galsim_cosmos" / "test_images.fits", 2).astype(float)
    mask = np.zeros(img.shape, bool)
    out.append(RealStamp("cosmos100533", img, np.full(img.shape, np.sqrt(var)), mask, psf, *_centre(img, mask)))
    ps = rd / "pysersic_hsc_ls"
    for g in ("gal2", "gal3"):
        img = np.load(ps / f"{g}_im.npy").astype(float)
        mask = np.load(ps / f"{g}_mask.npy") > 0
        sig = np.load(ps / f"{g}_sig.npy").astype(float)
        out.append(RealStamp(f"hsc_{g}", img, sig, mask, np.load(ps / f"{g}_psf.npy").astype(float),
                             *_centre(img, mask)))
    with fits.open(ps / "cutout_59.1067_-30.4848.fits") as hdus:
        img, ivar = hdus[3].data.astype(float), hdus[4].data.astype(float)
    psf = fits.getdata(ps / "copsf_59.1067_-30.4848.fits", 1).astype(float)
    mask = ~(ivar > 0)
    sig = np.where(mask, 1.0, 1.0 / np.sqrt(np.where(mask, 1.0, ivar)))
    out.append(RealStamp("ls_spiral_r", img, sig, mask, psf, *_centre(img, mask)))
    sd = ROOT / "data" / "sdss_imfit"
    img = fits.getdata(sd / "ic3478rss_256.fits").astype(float)
    mask = fits.getdata(sd / "ic3478rss_256_mask.fits") != 0
    gain, rn, sky = 4.725, 4.3, 130.14
    sig = np.sqrt(np.maximum(img + sky, 0.0) / gain + (rn / gain) ** 2)
    psf = fits.getdata(sd / "psf_moffat_51.fits").astype(float)
    out.append(RealStamp("sdss_ic3478", img, sig, mask, psf / psf.sum(), *_centre(img, mask)))
    return out


def fit_galmix(st: RealStamp, mode: str) -> tuple[dict, float]:
    """galmix Sersic fit: ``default``; ``whole`` (first stamp = the cutout, free sky, no residual search);
    ``search`` (defaults with the residual-source search on at 5 sigma)."""
    mix = fit_psf_image(st.psf / st.psf.sum(), 4).mixture
    var = st.sigma**2
    objects = Table({"objectId": [1], "x": [st.x], "y": [st.y]})
    if mode == "whole":
        half = max(st.image.shape)
        cfg = SourceFitConfig(stamp_sigmas=1e6, stamp_max=half, sky="flat", residual_threshold=0.0)
    elif mode == "search":
        cfg = SourceFitConfig(residual_threshold=5.0)
    else:
        cfg = SourceFitConfig()
    t0 = time.perf_counter()
    out = fit_patch({"r": (st.image, var, st.mask)}, (0, 0), objects, None, {"r": mix}, "sersic", cfg)
    return dict(out[0]), time.perf_counter() - t0


def _b(n: float) -> float:
    return float(gammaincinv(2 * n, 0.5))


def fit_pyimfit(st: RealStamp) -> tuple[dict, float]:
    """pyimfit exact Sersic + FlatSky on the whole cutout (LM), with the same noise, mask and PSF."""
    import pyimfit

    mom = adaptive_moments(np.where(st.mask, 0.0, st.image), np.where(st.mask, 0.0, st.sigma**-2), 0, 0,
                           guess=(st.x, st.y), fix_centroid=False, rtol=1e-3)
    cov = mom.cov if np.isfinite(mom.cov).all() else np.eye(2) * 9.0
    w, v = np.linalg.eigh(cov)
    a, b = np.sqrt(max(w[1], 1.0)), np.sqrt(max(w[0], 0.5))
    pa = np.degrees(np.arctan2(v[1, 1], v[0, 1])) - 90.0  # imfit: CCW from +y
    ell = float(np.clip(1 - b / a, 0.0, 0.8))
    reff0 = 1.2 * a
    ny, nx = st.image.shape
    desc = pyimfit.SimpleModelDescription()
    desc.x0.setValue(st.x + 1, [st.x - 10, st.x + 12])
    desc.y0.setValue(st.y + 1, [st.y - 10, st.y + 12])
    ser = pyimfit.make_imfit_function("Sersic")
    ser.PA.setValue(pa, [pa - 360, pa + 360])
    ser.ell.setValue(ell, [0.0, 0.99])
    ser.n.setValue(2.0, [0.3, 8.0])
    ser.r_e.setValue(reff0, [0.05, 10 * max(nx, ny)])
    flux0 = float(np.sum(np.where(st.mask, 0.0, st.image)))
    n0 = 2.0
    ie0 = max(flux0, 1e-6) / (2 * np.pi * n0 * np.exp(_b(n0)) * _b(n0) ** (-2 * n0) * gamma(2 * n0)
                               * reff0**2 * (1 - ell))
    ser.I_e.setValue(ie0, [0.0, 1e6 * ie0])
    desc.addFunction(ser)
    sky = pyimfit.make_imfit_function("FlatSky")
    scale = float(np.median(st.sigma))
    sky.I_sky.setValue(0.0, [-100 * scale, 100 * scale])
    desc.addFunction(sky)
    imfit = pyimfit.Imfit(desc, psf=st.psf / st.psf.sum())
    t0 = time.perf_counter()
    imfit.fit(st.image, error=st.sigma, mask=st.mask.astype(float), solver="LM")
    seconds = time.perf_counter() - t0
    p = dict(zip(imfit.numberedParameterNames, imfit.getRawParameters()))
    n, re, ie, e = p["n_1"], p["r_e_1"], p["I_e_1"], p["ell_1"]
    flux = 2 * np.pi * n * np.exp(_b(n)) * _b(n) ** (-2 * n) * gamma(2 * n) * ie * re**2 * (1 - e)
    return {"n": n, "reff": re, "flux": flux, "sky": p["I_sky_2"], "x": p["X0_1"] - 1, "y": p["Y0_1"] - 1,
            "q": 1 - e, "pa": p["PA_1"] + 90.0}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="substring of the stamp names to run")
    parser.add_argument("--modes", nargs="+", default=["default", "whole"], choices=["default", "whole", "search"])
    args = parser.parse_args()
    stamps = [s for s in load_stamps() if args.only is None or args.only in s.name]
    rows = []
    hdr = (f"{'galaxy':>16} {'pyimfit n':>9} {'r_e':>7} | {'mode':>7} {'dn':>7} {'dlnre':>7} {'dmag':>7} "
           f"{'sky/err':>8} {'nres':>4} {'t_gm ms':>8} {'t_imfit ms':>10} {'ratio':>6}")
    print(hdr)
    for st in stamps:
        ref, t_ref = fit_pyimfit(st)
        for mode in args.modes:
            gm, t_gm = fit_galmix(st, mode)
            dn = gm["sersic_index"] - ref["n"]
            dlr = np.log(gm["sersic_reffPix"] / ref["reff"])
            dmag = -2.5 * np.log10(gm["r_sersicFlux"] / ref["flux"])
            sky, skyerr = gm.get("r_sersic_sky", np.nan), gm.get("r_sersic_skyErr", np.nan)
            nres = int(gm["sersic_n_residual_sources"])
            rows.append((st.name, mode, dn, dlr, dmag, nres, t_gm, t_ref, bool(gm["sersic_flag"])))
            print(f"{st.name:>16} {ref['n']:9.3f} {ref['reff']:7.2f} | {mode:>7} {dn:+7.3f} {dlr:+7.3f} "
                  f"{dmag:+7.3f} {sky / skyerr if np.isfinite(skyerr) else np.nan:8.2f} {nres:4d} "
                  f"{1e3 * t_gm:8.1f} {1e3 * t_ref:10.1f} {t_ref / t_gm:6.1f}"
                  + ("  FLAGGED" if gm["sersic_flag"] else ""))
    for mode in args.modes:
        r = [x for x in rows if x[1] == mode]
        print(f"{mode:>8}: median |dn| {np.median([abs(x[2]) for x in r]):.3f}, |dln r_e| "
              f"{np.median([abs(x[3]) for x in r]):.3f}, |dmag| {np.median([abs(x[4]) for x in r]):.4f}; "
              f"galaxies with residual sources {sum(x[5] > 0 for x in r)}/{len(r)}; median time galmix "
              f"{1e3 * np.median([x[6] for x in r]):.1f} ms, pyimfit {1e3 * np.median([x[7] for x in r]):.1f} ms, "
              f"median ratio {np.median([x[7] / x[6] for x in r]):.1f}x; flagged {sum(x[8] for x in r)}")


if __name__ == "__main__":
    main()

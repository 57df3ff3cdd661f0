"""Fit the SDSS galaxies of ../shared/data/sdss_imfit with galmix and compare with Imfit's reference fits.

Run: ``python examples/sdss_imfit.py [DATA_DIR]`` (default ``/work/shared/data/sdss_imfit``).

- IC 3478 (64x64 cutout), Sersic, no PSF. Imfit integrates the model over pixels; galmix evaluates at
  pixel centres, so its "PSF" here is the pixel itself, a Gaussian of variance 1/12 pixel^2.
- NGC 3073, Sersic + exponential sharing a centre, with the Moffat PSF image and the mask. Imfit
  convolves its pixel-integrated model with the PSF image; galmix fits a 4-Gaussian mixture to the
  PSF image and adds the pixel (1/12 pixel^2 to every covariance) for the same effective PSF.

Imfit conventions (data README): X0, Y0 1-indexed; PA degrees CCW from +y; ell = 1 - b/a; r_e, h
along the major axis in pixels. The noise model reproduces Imfit's chi-square: variance [ADU^2] =
(data + sky) / gain + (read_noise / gain)^2. Fluxes are in ADU (the example works on raw counts).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from lsst.galmix.fitting.config import FitSettings, SourceFitConfig
from lsst.galmix.fitting.optimize import SourceSpec
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import Prepared, band_input, solve
from lsst.galmix.fitting.stamps import cut_box
from lsst.galmix.models.definitions import get_model
from lsst.galmix.models.ellipse import eta_from_q_pa, q_pa_from_eta
from lsst.galmix.models.psf_mixture import PsfMixture
from lsst.galmix.schema import FlagSet
from scipy.special import gamma, gammaincinv

GAIN, READ_NOISE = 4.725, 4.3
PIXEL_SCALE = 0.396
DATA = Path("/work/shared/data/sdss_imfit")

IMFIT_IC3478_64 = {"X0": 32.9439, "Y0": 34.0933, "PA": 18.2612, "ell": 0.235989, "n": 2.40028, "I_e": 20.0094,
                   "r_e": 60.7612, "chi2": 4555.947654}
IMFIT_N3073 = {"X0": 100.7073, "Y0": 97.0877, "sersic": {"PA": 111.919, "ell": 0.184262, "n": 3.2805,
                                                         "I_e": 78.2972, "r_e": 26.7976},
               "exp": {"PA": 51.724, "ell": 0.35226, "I_0": 39.7753, "h": 53.6058}, "chi2": 36828.577653}


def sersic_flux(i_e: float, r_e: float, n: float, ell: float) -> float:
    """Total flux of an Imfit Sersic component."""
    b = gammaincinv(2 * n, 0.5)
    return float(2 * np.pi * n * np.exp(b) * b ** (-2 * n) * gamma(2 * n) * i_e * r_e**2 * (1 - ell))


def _variance(data: np.ndarray, sky: float) -> np.ndarray:
    return (data + sky) / GAIN + (READ_NOISE / GAIN) ** 2


def _pa_imfit(theta_deg: float) -> float:
    """galmix position angle (CCW from +x) to Imfit's (CCW from +y), in [0, 180)."""
    return float((theta_deg - 90.0) % 180.0)


def _with_pixel(mix: PsfMixture) -> PsfMixture:
    return PsfMixture(mix.frac, mix.dx, mix.dy, mix.xx + 1 / 12, mix.yy + 1 / 12, mix.xy)


def fit_ic3478_64(data_dir: Path = DATA) -> dict[str, float]:
    """galmix Sersic fit of the IC 3478 64x64 cutout, in Imfit's parameters (plus flux and chi2)."""
    data = fits.getdata(data_dir / "ic3478rss_64x64.fits").astype(np.float64)
    var = _variance(data, 130.1)
    objects = Table({"objectId": [1], "x": [31.0], "y": [31.0]})
    cfg = SourceFitConfig(pixel_scale=PIXEL_SCALE, stamp_min=64, stamp_max=64, residual_threshold=0.0)
    out = fit_patch({"r": (data, var, None)}, (0, 0), objects, None, {"r": PsfMixture.gaussian(np.sqrt(1 / 12))},
                    "sersic", cfg)
    q, n, r_e = out["sersic_q"][0], out["sersic_index"][0], out["sersic_reffPix"][0]
    flux = out["r_sersicFlux"][0]
    b = gammaincinv(2 * n, 0.5)
    i_e = flux / (2 * np.pi * n * np.exp(b) * b ** (-2 * n) * gamma(2 * n) * r_e**2 * q)
    return {"X0": out["sersic_x"][0] + 1, "Y0": out["sersic_y"][0] + 1, "PA": _pa_imfit(out["sersic_pa"][0]),
            "ell": 1 - q, "n": n, "I_e": i_e, "r_e": r_e, "flux": flux, "chi2": out["sersic_chisq_reduced"][0] * out["sersic_n_pix"][0],
            "flag": bool(out["sersic_flag"][0]), "time": out.meta["galmix_object_seconds"],
            "n_err": out["sersic_indexErr"][0], "r_e_err": out["sersic_reffErr"][0] / PIXEL_SCALE}


def fit_n3073(data_dir: Path = DATA) -> dict:
    """galmix Sersic + exponential fit of NGC 3073 with the PSF and mask."""
    data = fits.getdata(data_dir / "n3073rss_small.fits").astype(np.float64)
    bad = fits.getdata(data_dir / "n3073rss_small_mask.fits") != 0
    var = _variance(data, 154.33)
    psf = _with_pixel(fit_psf_image(fits.getdata(data_dir / "psf_moffat_35_n4699z.fits").astype(float), 4).mixture)
    objects = Table({"objectId": [1], "x": [100.0], "y": [96.0]})
    cfg = SourceFitConfig(pixel_scale=PIXEL_SCALE, stamp_min=100, stamp_max=100, residual_threshold=0.0)
    out = fit_patch({"r": (data, var, bad)}, (0, 0), objects, None, {"r": psf}, "sersicexp", cfg)
    res = {"X0": out["sersicexp_x"][0] + 1, "Y0": out["sersicexp_y"][0] + 1, "chi2": out["sersicexp_chisq_reduced"][0] * out["sersicexp_n_pix"][0],
           "flag": bool(out["sersicexp_flag"][0]), "time": out.meta["galmix_object_seconds"]}
    res["sersic"] = {"PA": _pa_imfit(out["sersicexp_sersic_pa"][0]), "ell": 1 - out["sersicexp_sersic_q"][0],
                     "n": out["sersicexp_sersic_index"][0], "r_e": out["sersicexp_sersic_reffPix"][0],
                     "flux": out["r_sersicexp_sersicFlux"][0]}
    # Exponential: h = r_e / b_1 (b_1 = 1.678...).
    res["exp"] = {"PA": _pa_imfit(out["sersicexp_exp_pa"][0]), "ell": 1 - out["sersicexp_exp_q"][0],
                  "h": out["sersicexp_exp_reffPix"][0] / gammaincinv(2.0, 0.5),
                  "flux": out["r_sersicexp_expFlux"][0]}
    return res


def fit_n3073_from_imfit(data_dir: Path = DATA) -> dict:
    """The same fit started at Imfit's solution (lower-level API), to separate the model from the
    optimizer: the likelihood is multimodal and the codes can settle in different minima."""
    data = fits.getdata(data_dir / "n3073rss_small.fits").astype(np.float64)
    bad = fits.getdata(data_dir / "n3073rss_small_mask.fits") != 0
    psf = _with_pixel(fit_psf_image(fits.getdata(data_dir / "psf_moffat_35_n4699z.fits").astype(float), 4).mixture)
    stamp = cut_box(data, _variance(data, 154.33), bad, (0, 0), (0, 0), data.shape[::-1])
    ref = IMFIT_N3073
    theta0 = [ref["X0"] - 1, ref["Y0"] - 1]
    for comp, r_e in (("sersic", ref["sersic"]["r_e"]), ("exp", ref["exp"]["h"] * gammaincinv(2.0, 0.5))):
        e1, e2 = eta_from_q_pa(1 - ref[comp]["ell"], np.radians(ref[comp]["PA"] + 90))
        theta0 += [np.log(r_e), e1, e2] + ([ref["sersic"]["n"]] if comp == "sersic" else [])
    prep = Prepared([SourceSpec(get_model("sersicexp"), (0.0, 0.0))], np.array(theta0),
                    [band_input(stamp, psf)], [FlagSet()])
    out = solve([prep], FitSettings())[0][0]
    th = out.theta
    q_s, pa_s = q_pa_from_eta(th[3], th[4])
    q_e, pa_e = q_pa_from_eta(th[7], th[8])
    return {"chi2": out.chi2, "sersic": {"n": th[5], "r_e": np.exp(th[2]), "ell": 1 - q_s,
                                         "PA": _pa_imfit(np.degrees(pa_s)), "flux": out.fluxes[0, 0]},
            "exp": {"h": np.exp(th[6]) / gammaincinv(2.0, 0.5), "ell": 1 - q_e, "PA": _pa_imfit(np.degrees(pa_e)),
                    "flux": out.fluxes[0, 1]}}


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    ref = IMFIT_IC3478_64
    ic = fit_ic3478_64(data_dir)
    ref_flux = sersic_flux(ref["I_e"], ref["r_e"], ref["n"], ref["ell"])
    print("IC 3478 64x64, Sersic, no PSF            galmix      Imfit")
    for key in ("X0", "Y0", "PA", "ell", "n", "r_e", "I_e", "chi2"):
        print(f"  {key:6s} {ic[key]:20.4f} {ref[key]:10.4f}")
    print(f"  flux   {ic['flux']:20.1f} {ref_flux:10.1f}  (dmag {-2.5 * np.log10(ic['flux'] / ref_flux):+.4f})")
    print(f"  galmix errors: n +- {ic['n_err']:.4f}, r_e +- {ic['r_e_err']:.3f} px; time {1e3 * ic['time']:.1f} ms")
    ref = IMFIT_N3073
    nc = fit_n3073(data_dir)
    print("NGC 3073, Sersic + exponential, PSF, mask  galmix      Imfit")
    print(f"  X0     {nc['X0']:20.4f} {ref['X0']:10.4f}\n  Y0     {nc['Y0']:20.4f} {ref['Y0']:10.4f}")
    for key in ("PA", "ell", "n", "r_e"):
        print(f"  sersic {key:4s} {nc['sersic'][key]:18.4f} {ref['sersic'][key]:10.4f}")
    for key in ("PA", "ell", "h"):
        print(f"  exp {key:7s} {nc['exp'][key]:18.4f} {ref['exp'][key]:10.4f}")
    fs = sersic_flux(ref["sersic"]["I_e"], ref["sersic"]["r_e"], ref["sersic"]["n"], ref["sersic"]["ell"])
    fe = 2 * np.pi * ref["exp"]["I_0"] * ref["exp"]["h"] ** 2 * (1 - ref["exp"]["ell"])
    print(f"  sersic flux {nc['sersic']['flux']:15.1f} {fs:10.1f}\n  exp flux {nc['exp']['flux']:18.1f} {fe:10.1f}")
    total = nc["sersic"]["flux"] + nc["exp"]["flux"]
    print(f"  total flux {total:16.1f} {fs + fe:10.1f}  (dmag {-2.5 * np.log10(total / (fs + fe)):+.4f})")
    print(f"  chi2   {nc['chi2']:20.2f} {ref['chi2']:10.2f}; time {1e3 * nc['time']:.1f} ms")
    st = fit_n3073_from_imfit(data_dir)
    print("NGC 3073, galmix started at Imfit's solution")
    for comp, keys in (("sersic", ("PA", "ell", "n", "r_e", "flux")), ("exp", ("PA", "ell", "h", "flux"))):
        for key in keys:
            val = ref[comp].get(key, fs if comp == "sersic" else fe)
            print(f"  {comp} {key:5s} {st[comp][key]:18.4f} {val:10.4f}")
    print(f"  chi2   {st['chi2']:20.2f} {ref['chi2']:10.2f}")


if __name__ == "__main__":
    main()

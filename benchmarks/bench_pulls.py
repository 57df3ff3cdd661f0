"""Error calibration against S/N: pulls of flux and r_e of a free-index Sersic over noise realisations.

Usage: ``python benchmarks/bench_pulls.py MODEL SNR [N_REAL] [--profile] [--n-prior MEAN SIGMA] [--n TRUE_N]``
(e.g. ``sersic 25 400 --profile``). The galaxy is that of ``tests/test_fit_sersic.py::test_error_calibration``
(n 1.5, r_e 3 px, q 0.7, Moffat FWHM 3.5 px, 4-Gaussian PSF); the reference is the fit of the noiseless
image (with the same prior). Prints the spread of (fit - ref) / error with each fit's own errors and with
the errors of the reference fit (the Fisher matrix at the truth), the number of fits with n at a bound,
and quantiles of n and of the error ratio. ``--profile`` adds the profile-likelihood errors of r_e
(`lsst.galmix.fitting.profile.reff_profile_errors`, the side facing the reference) in r_e and in ln r_e.
"""
import sys

import numpy as np
from astropy.table import Table
from lsst.galmix.fitting.optimize import FitSettings, Priors
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.profile import reff_profile_errors
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import SourceFitConfig
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp

args = sys.argv[1:]
profile = "--profile" in args
priors = Priors()
true_n = None
if "--n-prior" in args:
    k = args.index("--n-prior")
    priors = Priors(n=(float(args[k + 1]), float(args[k + 2])))
    del args[k : k + 3]
if "--n" in args:
    k = args.index("--n")
    true_n = float(args[k + 1])
    del args[k : k + 2]
args = [a for a in args if a != "--profile"]
PSF = moffat_psf(3.5)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
model = args[0]; snr = float(args[1]); nreal = int(args[2]) if len(args) > 2 else 400
if true_n is None:
    true_n = 1.0 if model == "exp" else 1.5
t = GalaxyTruth(20.0, 20.0, 1000.0, n=true_n, reff=3.0, q=0.7, theta=0.2)
clean = render_stamp([t], PSF, (41, 41))
sigma = noise_sigma_for_snr(clean, snr)
rng = np.random.default_rng(7)
obj = Table({"objectId": [1], "x": [t.x], "y": [t.y]})
obj["shape_xx"], obj["shape_yy"], obj["shape_xy"] = [14.0], [11.0], [0.5]
cfg = SourceFitConfig(stamp_min=16, stamp_max=16, settings=FitSettings(priors=priors))
var = np.full(clean.shape, sigma**2)
ref = fit_patch({"r": (clean, var, None)}, (0, 0), obj, None, {"r": MIX}, model, cfg)
F0, r0 = ref[f"r_{model}Flux"][0], ref[f"{model}_reff"][0]
Fe0, re0 = ref[f"r_{model}FluxErr"][0], ref[f"{model}_reffErr"][0]
rows = []
nb = 0
for _ in range(nreal):
    images = {"r": (clean + rng.normal(0, sigma, clean.shape), var, None)}
    out = fit_patch(images, (0, 0), obj, None, {"r": MIX}, model, cfg)
    bound = bool(out[f"{model}_flag_param_at_bound"][0])
    nb += bound
    if out[f"{model}_flag"][0]:
        continue
    lo = hi = np.nan
    if profile:
        (lo,), (hi,) = reff_profile_errors(images, (0, 0), obj, {"r": MIX}, model, out, cfg)
    rows.append((out[f"r_{model}Flux"][0], out[f"r_{model}FluxErr"][0], out[f"{model}_reff"][0],
                 out[f"{model}_reffErr"][0], out[f"{model}_n"][0] if model == "sersic" else 1.0, bound,
                 lo, hi))
a = np.array(rows, float)
f, fe, r, re, n, b, lo, hi = a.T
keep = b == 0
n0 = ref[f"{model}_n"][0] if model == "sersic" else 1.0
print(f"{model} S/N {snr}: N={len(a)}, at_bound={nb}, true n={true_n}, ref n={n0:.3f}, "
      f"ref r_e/true {ref[f'{model}_reffPix'][0] / 3.0:.4f}, ref F/true {F0 / 1000.0:.4f}, "
      f"prior n={priors.n}")


def rep(name, sel):
    pf = (f[sel] - F0) / fe[sel]; pr = (r[sel] - r0) / re[sel]
    dln = np.log(r[sel] / r0)
    lr = dln / (re[sel] / r[sel])
    print(f"  {name:22s} std pull F {pf.std():.3f} reff {pr.std():.3f} ln reff {lr.std():.3f}; "
          f"with ref errors F {((f[sel]-F0)/Fe0).std():.3f} reff {((r[sel]-r0)/re0).std():.3f}; "
          f"mean pull F {pf.mean():+.3f} r {pr.mean():+.3f}; "
          f"robust(1.4826 MAD) r {1.4826 * np.median(abs(pr - np.median(pr))):.3f}")
    if profile:
        side = np.where(r[sel] < r0, hi[sel], lo[sel])
        w = np.where(dln < 0, np.log1p(hi[sel] / r[sel]), -np.log1p(-lo[sel] / r[sel]))
        pp, pl = (r[sel] - r0) / side, dln / w
        print(f"  {'':22s} profile: std pull reff {pp.std():.3f} ln reff {pl.std():.3f}; "
              f"mean {pp.mean():+.3f} / {pl.mean():+.3f}; 68% coverage profile {(abs(pl) < 1).mean():.3f} "
              f"Fisher {(abs(lr) < 1).mean():.3f}")


rep("all (incl. at bound)", np.ones(len(a), bool))
rep("excluding at bound", keep)
print(f"  median n - ref n {np.median(n[keep]) - n0:+.3f}, "
      f"median r_e/ref - 1 {np.median(r[keep] / r0) - 1:+.4f}, "
      f"median F/ref - 1 {np.median(f[keep] / F0) - 1:+.4f}")
print("  n quantiles", np.round(np.percentile(n, [1, 10, 50, 90, 99]), 2),
      "err ratio re/re0 quantiles", np.round(np.percentile(re / re0, [10, 50, 90]), 2))

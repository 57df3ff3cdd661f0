"""Error calibration: pulls of flux and r_e over noise realisations of one galaxy.

Usage: ``python benchmarks/bench_pulls.py [MODEL [SNR [N_REAL]]] [--snr-definition {flux,optimal}] [--reff PIX]
[--n TRUE_N] [--profile] [--n-prior MEAN SIGMA] [--seed S]`` (defaults: ``sersic 20 400``, catalogue S/N).

The galaxy is that of ``tests/test_fit_calibration.py`` (n 1.5, or the model's fixed index, r_e 3 px, q 0.7, Moffat
FWHM 3.5 px, 4-Gaussian PSF); the reference is the fit of the noiseless image. ``SNR`` is either the
catalogue S/N of the model, ``flux / fluxErr`` of the reference fit (``flux``, the default;
`lsst.galmix.fitting.testing.noise_sigma_for_flux_snr`), or GalSim's optimal (matched-filter) S/N of the
image (``optimal``).
Prints the spread of (fit - ref) / error with each fit's own errors and with the errors of the reference fit
(the Fisher matrix at the truth), the number of fits with n at a bound, and quantiles of n and of the error
ratio. ``--profile`` adds the profile-likelihood errors of r_e (`lsst.galmix.fitting.profile`), the side
facing the reference, in r_e and in ln r_e.
"""

import argparse

import numpy as np
from astropy.table import Table
from lsst.galmix.fitting import testing
from lsst.galmix.fitting.config import FitSettings, Priors, SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.profile import reff_profile_errors
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.models.definitions import ProfileKind, get_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", nargs="?", default="sersic")
parser.add_argument("snr", type=float, nargs="?", default=20.0)
parser.add_argument("n_real", type=int, nargs="?", default=400)
parser.add_argument("--snr-definition", choices=("optimal", "flux"), default="flux")
parser.add_argument("--reff", type=float, default=3.0, help="true r_e in pixels")
parser.add_argument("--n", type=float, default=None, help="true Sersic index")
parser.add_argument("--profile", action="store_true")
parser.add_argument("--n-prior", type=float, nargs=2, default=None, metavar=("MEAN", "SIGMA"))
parser.add_argument("--seed", type=int, default=7)
args = parser.parse_args()
model = args.model
priors = Priors(n=tuple(args.n_prior)) if args.n_prior else Priors()
component = get_model(model).components[0]
fixed_n = 0.5 if component.profile == ProfileKind.GAUSS else component.sersic_n
true_n = args.n if args.n is not None else (fixed_n if fixed_n is not None else 1.5)
PSF = testing.moffat_psf(3.5)
MIX = fit_psf_image(testing.psf_kernel(PSF, 41), 4).mixture
half = max(20, round(5 * args.reff))
t = testing.GalaxyTruth(float(half), float(half), 1000.0, n=true_n, reff=args.reff, q=0.7, position_angle=0.2)
clean = testing.render_stamp([t], PSF, (2 * half + 1, 2 * half + 1))
obj = Table({"objectId": [1], "x": [t.x], "y": [t.y]})
obj["shape_xx"], obj["shape_yy"], obj["shape_xy"] = [14.0], [11.0], [0.5]
stamp = max(16, round(16 * args.reff / 3.0))
cfg = SourceFitConfig(stamp_min=stamp, stamp_max=stamp, settings=FitSettings(priors=priors))
if args.snr_definition == "flux":
    sigma = testing.noise_sigma_for_flux_snr(clean, args.snr, obj, MIX, model, cfg)
else:
    sigma = testing.noise_sigma_for_snr(clean, args.snr)
var = np.full(clean.shape, sigma**2)
ref = fit_patch({"r": (clean, var, None)}, (0, 0), obj, None, {"r": MIX}, model, cfg)
F0, r0 = ref[f"r_{model}Flux"][0], ref[f"{model}_reff"][0]
Fe0, re0 = ref[f"r_{model}FluxErr"][0], ref[f"{model}_reffErr"][0]
rng = np.random.default_rng(args.seed)
rows = []
nb = 0
for _ in range(args.n_real):
    images = {"r": (clean + rng.normal(0, sigma, clean.shape), var, None)}
    out = fit_patch(images, (0, 0), obj, None, {"r": MIX}, model, cfg)
    bound = bool(out[f"{model}_param_at_bound_flag"][0])
    nb += bound
    if out[f"{model}_flag"][0]:
        continue
    lo = hi = np.nan
    if args.profile:
        (lo,), (hi,) = reff_profile_errors(images, (0, 0), obj, {"r": MIX}, model, out, cfg)
    rows.append((out[f"r_{model}Flux"][0], out[f"r_{model}FluxErr"][0], out[f"{model}_reff"][0],
                 out[f"{model}_reffErr"][0], out[f"{model}_index"][0] if model == "sersic" else true_n, bound,
                 lo, hi))
a = np.array(rows, float)
finite = np.isfinite(a[:, 1]) & np.isfinite(a[:, 3])
print(f"  fits without finite flux and r_e errors (r_e at its bound): {(~finite).sum()}")
a = a[finite]
f, fe, r, re, n, b, lo, hi = a.T
keep = b == 0
n0 = ref[f"{model}_index"][0] if model == "sersic" else true_n
optimal = np.sqrt((clean**2).sum()) / sigma
print(f"{model} r_e {args.reff} px, true n {true_n}: optimal S/N {optimal:.1f}, flux S/N of the reference "
      f"{F0 / Fe0:.1f}; N={len(a)}, at_bound={nb}, ref n={n0:.3f}, ref r_e/true "
      f"{ref[f'{model}_reffPix'][0] / args.reff:.4f}, ref F/true {F0 / 1000.0:.4f}, prior n={priors.n}")


def rep(name, sel):
    pf = (f[sel] - F0) / fe[sel]
    pr = (r[sel] - r0) / re[sel]
    dln = np.log(r[sel] / r0)
    lr = dln / (re[sel] / r[sel])
    print(f"  {name:22s} std pull F {pf.std():.3f} reff {pr.std():.3f} ln reff {lr.std():.3f}; "
          f"with ref errors F {((f[sel]-F0)/Fe0).std():.3f} reff {((r[sel]-r0)/re0).std():.3f}; "
          f"mean pull F {pf.mean():+.3f} r {pr.mean():+.3f}; "
          f"robust(1.4826 MAD) r {1.4826 * np.median(abs(pr - np.median(pr))):.3f}")
    if args.profile:
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

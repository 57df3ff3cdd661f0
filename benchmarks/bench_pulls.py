"""Error calibration against S/N: pulls of flux and r_e of a free-index Sersic over noise realisations.

Usage: ``python benchmarks/bench_pulls.py MODEL SNR [N_REAL]`` (e.g. ``sersic 25 400``). The galaxy is that
of ``tests/test_fit_sersic.py::test_error_calibration`` (n 1.5, r_e 3 px, q 0.7, Moffat FWHM 3.5 px,
4-Gaussian PSF); the reference is the fit of the noiseless image. Prints the spread of (fit - ref) / error with each
fit's own errors and with the errors of the reference fit (the Fisher matrix at the truth), the number of
fits with n at a bound, and quantiles of n and of the error ratio.
"""
import sys

import numpy as np
from astropy.table import Table
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.source import SourceFitConfig
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, noise_sigma_for_snr, psf_kernel, render_stamp

PSF = moffat_psf(3.5)
MIX = fit_psf_image(psf_kernel(PSF, 41), 4).mixture
model = sys.argv[1]; snr = float(sys.argv[2]); nreal = int(sys.argv[3]) if len(sys.argv) > 3 else 400
t = GalaxyTruth(20.0, 20.0, 1000.0, n=1.0 if model == "exp" else 1.5, reff=3.0, q=0.7, theta=0.2)
clean = render_stamp([t], PSF, (41, 41))
sigma = noise_sigma_for_snr(clean, snr)
rng = np.random.default_rng(7)
obj = Table({"objectId": [1], "x": [t.x], "y": [t.y]})
obj["shape_xx"], obj["shape_yy"], obj["shape_xy"] = [14.0], [11.0], [0.5]
cfg = SourceFitConfig(stamp_min=16, stamp_max=16)
var = np.full(clean.shape, sigma**2)
ref = fit_patch({"r": (clean, var, None)}, (0, 0), obj, None, {"r": MIX}, model, cfg)
F0, r0 = ref[f"r_{model}Flux"][0], ref[f"{model}_reff"][0]
Fe0, re0 = ref[f"r_{model}FluxErr"][0], ref[f"{model}_reffErr"][0]
rows = []
nb = 0
for _ in range(nreal):
    img = clean + rng.normal(0, sigma, clean.shape)
    out = fit_patch({"r": (img, var, None)}, (0, 0), obj, None, {"r": MIX}, model, cfg)
    bound = bool(out[f"{model}_flag_param_at_bound"][0])
    nb += bound
    if out[f"{model}_flag"][0]:
        continue
    rows.append((out[f"r_{model}Flux"][0], out[f"r_{model}FluxErr"][0], out[f"{model}_reff"][0],
                 out[f"{model}_reffErr"][0], out[f"{model}_n"][0] if model == "sersic" else 1.0, bound))
a = np.array(rows, float)
f, fe, r, re, n, b = a.T
keep = b == 0
print(f"{model} S/N {snr}: N={len(a)}, at_bound={nb}, ref n={ref[f'{model}_n'][0] if model=='sersic' else 1}")
def rep(name, sel):
    pf = (f[sel] - F0) / fe[sel]; pr = (r[sel] - r0) / re[sel]
    lr = (np.log(r[sel]) - np.log(r0)) / (re[sel] / r[sel])
    print(f"  {name:28s} std pull F {pf.std():.3f} reff {pr.std():.3f} ln reff {lr.std():.3f}; "
          f"with ref errors F {((f[sel]-F0)/Fe0).std():.3f} reff {((r[sel]-r0)/re0).std():.3f}; "
          f"mean pull F {pf.mean():+.3f} r {pr.mean():+.3f}; "
          f"robust(1.4826 MAD) r {1.4826 * np.median(abs(pr - np.median(pr))):.3f}")
rep("all (incl. at bound)", np.ones(len(a), bool))
rep("excluding at bound", keep)
print("  n quantiles", np.round(np.percentile(n, [1, 10, 50, 90, 99]), 2),
      "err ratio re/re0 quantiles", np.round(np.percentile(re / re0, [10, 50, 90]), 2))

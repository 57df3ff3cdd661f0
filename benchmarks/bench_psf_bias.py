"""Star and galaxy biases against the number of PSF Gaussians (noiseless GalSim images, Moffat PSF).

Usage: ``python benchmarks/bench_psf_bias.py [SKY_VAR]``: uniform unit variance (sky-limited); with
``SKY_VAR`` also a second fit with variance ``SKY_VAR + image`` (source-limited). Prints dmag (fit - truth),
dln r_e and dn per case for 2, 3, 4 Gaussians and the light the mixture holds (``fracsum``).
"""
import sys

import numpy as np
from astropy.table import Table
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, psf_kernel, render_stamp
from lsst.galmix.schema import flux_column

psf = moffat_psf(3.5)
kern = psf_kernel(psf, 41)
shape = (61, 61)
cases = [("star", GalaxyTruth(30.3, 30.1, 1e4, n=0)),
         ("n1 r3", GalaxyTruth(30.3, 30.1, 1e4, n=1, reff=3.0, q=0.7, position_angle=0.3)),
         ("n4 r3", GalaxyTruth(30.3, 30.1, 1e4, n=4, reff=3.0, q=0.7, position_angle=0.3)),
         ("n1 r1.5", GalaxyTruth(30.3, 30.1, 1e4, n=1, reff=1.5, q=0.7, position_angle=0.3)),
         ("n2.5 r6", GalaxyTruth(30.3, 30.1, 1e4, n=2.5, reff=6, q=0.5, position_angle=0.3))]
for ng in (2, 3, 4):
    mix = fit_psf_image(kern, ng).mixture
    out = [f"ng={ng} fracsum={mix.frac.sum():.5f}"]
    for name, t in cases:
        img = render_stamp([t], psf, shape)
        for sky_var in ((1.0,) if len(sys.argv) < 2 else (1.0, float(sys.argv[1]))):
            var = np.full(shape, sky_var) + (0 if sky_var == 1.0 else img.clip(0) )
            objs = Table({"objectId": [1], "x": [t.x], "y": [t.y]})
            model = "point" if t.n == 0 else "sersic"
            tab = fit_patch({"r": (img, var, np.zeros(shape, bool))}, (0, 0), objs, None, {"r": mix}, model,
                            config=SourceFitConfig(stamp_max=30))
            f = tab[flux_column(model, "r")][0]
            s = f"{name}: dmag {-2.5*np.log10(f/t.flux):+.4f}"
            if model == "sersic":
                s += f" dlnr {np.log(tab['sersic_reffPix'][0]/t.reff):+.4f} dn {tab['sersic_index'][0]-t.n:+.3f}"
            out.append(s)
    print(" | ".join(out))

"""Cost and accuracy of parametric deblending against blend size.

Blends of N children on a jittered grid (neighbours 14 px = 3.5 PSF FWHM apart, fluxes 300-3000, Sersic
n 0.8-2.5, r_e 1.5-3 px, unit noise; the test data of tests/test_fit_blends_sizes.py) are fitted with
the library defaults (joint up to ``max_children``, larger blends in blocks with neighbours subtracted).
For each N the script prints the fraction of children with S/N >= 20 whose flux lies within 3 sigma of
the truth (with its 95% Clopper-Pearson interval: the binomial uncertainty of that fraction), the median
and mean of their pulls (flux minus truth over the flux error: a bias shows there) and the time per child;
the same children fitted one by one as isolated objects (one per image) give the reference cost and
pulls (the bias of a single-object fit). With ``--joint`` each blend is also fitted jointly (all children
in one fit, untimed) and the script prints how far the blend fit's fluxes lie from the joint fit's, in its
errors: the distance of the block sweeps from the optimum they iterate towards. Times
are CPU seconds of this process (``time.process_time``; the fits run on one thread), which a shared
machine disturbs less than wall time; one small blend and one isolated galaxy are fitted first, so that
neither side pays for first-use imports. The engine's kernel set (``GALMIX_ISA``) is printed first.
Run: ``.venv/bin/python benchmarks/bench_blends.py [--sizes 2 5 8 15 100] [--children 40]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy.stats import beta

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lsst.galmix._galmix import active_isa
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.testing import GalaxyTruth, render_stamp
from test_fit_blends_sizes import MIX, PSF, SIGMA, fit_blend, make_blend


def isolated_fits(truths: list[GalaxyTruth], rng: np.random.Generator) -> tuple[float, list[float]]:
    """CPU seconds to fit the same galaxies each alone on its own 61x61 image (library defaults), and the
    flux pulls of those with S/N >= 20."""
    total, pulls = 0.0, []
    for t in truths:
        iso = GalaxyTruth(30.0 + t.x % 1, 30.0 + t.y % 1, t.flux, t.n, t.reff, t.q, t.position_angle)
        img = render_stamp([iso], PSF, (61, 61)) + rng.normal(0, SIGMA, (61, 61))
        objects = Table({"objectId": [1], "x": [iso.x], "y": [iso.y]})
        t0 = time.process_time()
        row = fit_patch({"r": (img, np.full(img.shape, SIGMA**2), None)}, (0, 0), objects, None, {"r": MIX},
                        "sersic", SourceFitConfig())[0]
        total += time.process_time() - t0
        if row["r_sersicFlux"] / row["r_sersicFluxErr"] >= 20:
            pulls.append(float((row["r_sersicFlux"] - t.flux) / row["r_sersicFluxErr"]))
    return total, pulls
    return total


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a fraction ``k / n``."""
    a = 1 - level
    lo = float(beta.ppf(a / 2, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(1 - a / 2, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 5, 8, 15, 100])
    parser.add_argument("--children", type=int, default=40, help="children per size (several blends)")
    parser.add_argument("--joint", action="store_true",
                        help="also fit each blend jointly (max_children = its size; not timed) and print the "
                        "median and rms of (flux - joint flux) / joint error over all children")
    args = parser.parse_args()
    # Warm-up: first-use imports and caches are paid here, not by the first size measured.
    warm_rng = np.random.default_rng(0)
    img, objects, truths = make_blend(2, warm_rng)
    fit_blend(img, objects)
    isolated_fits(truths[:1], warm_rng)
    print(f"engine kernels: {active_isa()}; CPU time of this process")
    print(f"{'N':>4} {'blends':>6} {'S/N>=20':>7} {'within 3 sigma':>14} {'95% interval':>13} {'median pull':>11} "
          f"{'mean pull':>9} {'isolated: median':>16} {'mean':>5} {'ms/child blend':>14} {'ms/child isolated':>17} "
          f"{'ratio':>6}" + (f" {'vs joint: median':>16} {'rms':>5}" if args.joint else ""))
    for n in args.sizes:
        rng = np.random.default_rng(1000 + n)
        n_blends = max(1, int(np.ceil(args.children / n)))
        pulls, iso_pulls, vs_joint, t_blend, t_iso, count = [], [], [], 0.0, 0.0, 0
        for _ in range(n_blends):
            img, objects, truths = make_blend(n, rng)
            t0 = time.process_time()
            out = fit_blend(img, objects)
            t_blend += time.process_time() - t0
            seconds, iso = isolated_fits(truths, rng)
            t_iso += seconds
            iso_pulls += iso
            count += n
            if args.joint:
                joint = fit_blend(img, objects, max_children=n)
                vs_joint += list((out["r_sersicFlux"] - joint["r_sersicFlux"]) / joint["r_sersicFluxErr"])
            for row, t in zip(out, truths):
                if row["r_sersicFlux"] / row["r_sersicFluxErr"] >= 20:
                    pulls.append((row["r_sersicFlux"] - t.flux) / row["r_sersicFluxErr"])
        p = np.abs(pulls)
        lo, hi = binomial_interval(int(np.sum(p < 3)), len(p))
        print(f"{n:4d} {n_blends:6d} {len(p):7d} {np.mean(p < 3):14.3f} {f'{lo:.3f}-{hi:.3f}':>13} "
              f"{np.median(pulls):+11.2f} {np.mean(pulls):+9.2f} {np.median(iso_pulls):+16.2f} "
              f"{np.mean(iso_pulls):+5.2f} {1e3 * t_blend / count:14.1f} {1e3 * t_iso / count:17.1f} "
              f"{t_blend / t_iso:6.2f}"
              + (f" {np.median(vs_joint):+16.2f} {np.sqrt(np.mean(np.square(vs_joint))):5.2f}" if args.joint else ""))


if __name__ == "__main__":
    main()

"""Accuracy of the Sersic Gaussian mixtures after PSF convolution, against GalSim, for several K.

For each Sersic index n and size reff / FWHM, GalSim's exact Sersic and the K-Gaussian mixture
(interpolated in n from a table derived with ``derive_sersic_mixtures``) are sheared (q = 0.6),
convolved with a Moffat PSF (beta 3.5, FWHM 2.5 pixels), drawn on the same pixels and measured the
same way (`lsst.galmix.models.sersic_check`): flux inside the elliptical aperture of semi-major axis
20 reff and half-light semi-major axis. Prints dmag = -2.5 log10(F_mix / F_exact) and
dln(reff) = ln(hlr_mix / hlr_exact) in units of 1e-3, the worst case per K, and the derivation time.

Run: ``python benchmarks/bench_sersic_accuracy.py [--k 6 8 10 12] [--quick]``. Tables for K other
than the shipped ones are derived on the fly (a few seconds each).
"""

import argparse
import time

import galsim
import numpy as np
from lsst.galmix.models.derive_sersic_mixtures import derive_table
from lsst.galmix.models.sersic import spline_from_table
from lsst.galmix.models.sersic_check import exact_sersic, measure_profile, mixture_profile
from lsst.galmix.models.sersic_table import available_n_components, read_table

FWHM = 2.5
PSF = galsim.Moffat(beta=3.5, fwhm=FWHM)
Q, ANGLE = 0.6, 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[6, 8, 10, 12])
    parser.add_argument("--quick", action="store_true", help="coarser grid")
    args = parser.parse_args()
    n_values = [0.5, 0.55, 0.7, 1.0, 1.5, 2.0, 2.7, 3.5, 4.0, 4.6, 5.3, 6.0]
    ratios = [0.3, 0.6, 1.0, 2.0, 5.0]
    if args.quick:
        n_values, ratios = [0.5, 1.0, 2.0, 4.0, 6.0], [0.3, 1.0, 5.0]

    splines, derive_time = {}, {}
    for k in args.k:
        t0 = time.perf_counter()
        table = read_table(k) if k in available_n_components() else derive_table(k)
        derive_time[k] = time.perf_counter() - t0
        splines[k] = spline_from_table(table)

    dmag = {k: np.empty((len(n_values), len(ratios))) for k in args.k}
    dlnr = {k: np.empty((len(n_values), len(ratios))) for k in args.k}
    t_exact = t_mix = 0.0
    for i, n in enumerate(n_values):
        for j, ratio in enumerate(ratios):
            reff = ratio * FWHM
            t0 = time.perf_counter()
            exact = measure_profile(exact_sersic(n, reff, Q), reff, PSF, Q, ANGLE)
            t_exact += time.perf_counter() - t0
            for k in args.k:
                w, s, _, _ = splines[k](n)
                t0 = time.perf_counter()
                mix = measure_profile(mixture_profile(w, s, reff, Q), reff, PSF, Q, ANGLE)
                t_mix += time.perf_counter() - t0
                dmag[k][i, j] = -2.5 * np.log10(mix.flux / exact.flux)
                dlnr[k][i, j] = np.log(mix.hlr / exact.hlr)

    header = "     n | " + " ".join(f"{r:>5.1f}" for r in ratios)
    for k in args.k:
        print(
            f"\nK = {k}  (table {'shipped' if k in available_n_components() else 'derived'} in "
            f"{derive_time[k]:.1f} s)   dmag [1e-3]  ||  dln(reff) [1e-3]    columns: reff / FWHM"
        )
        print(header + " || " + " ".join(f"{r:>5.1f}" for r in ratios))
        for i, n in enumerate(n_values):
            print(
                f"{n:6.2f} | "
                + " ".join(f"{v * 1e3:+5.2f}" for v in dmag[k][i])
                + " || "
                + " ".join(f"{v * 1e3:+5.2f}" for v in dlnr[k][i])
            )
    print("\nsummary (worst |value| over the grid, 1e-3):")
    print("   K  |dmag|  |dln reff|  within 0.2%")
    for k in args.k:
        worst_mag, worst_r = np.abs(dmag[k]).max(), np.abs(dlnr[k]).max()
        ok = worst_mag * np.log(10) / 2.5 < 2e-3 and worst_r < 2e-3
        print(f"  {k:2d}  {worst_mag * 1e3:6.2f}  {worst_r * 1e3:9.2f}  {'yes' if ok else 'NO'}")
    print(f"\nrendering time: GalSim Sersic {t_exact:.1f} s, mixtures {t_mix:.1f} s")


if __name__ == "__main__":
    main()

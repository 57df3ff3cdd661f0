"""Speed and accuracy of galmix's Sersic fits against pyimfit (exact Sersic x PSF image), same run.

Sets: single-band Sersic galaxies (n 0.5-6, r_e 0.3"-2", q 0.2-1, random angle,
S/N 20-1000, Moffat PSF FWHM 0.6"-0.8", 0.2" pixels); stars; a 3-band set with colours and per-band
PSFs. Every image is rendered by GalSim (exact profiles, pixel-integrated) and fitted by galmix (Sersic
mixture, PSF = Gaussian mixture fitted to the PSF kernel image) and by pyimfit (exact Sersic convolved
with the PSF image drawn without the pixel, since Imfit integrates over pixels itself).

Times are per object on one core: galmix = stamp cutting + adaptive moments + the C++ fit (the
pieces ``fit_patch`` runs per object); pyimfit = ``Imfit.fit``. pyimfit starts from the truth
(perturbed), galmix from its own moments: the comparison favours pyimfit's convergence. galmix's
CPU time per object (``time.thread_time``) is printed beside the wall-clock time: on a loaded machine
it is the figure that measures the code. ``GALMIX_ISA`` selects the engine's kernels.

With ``--stages`` the galmix fits of each galaxy set are then replayed (same inputs, three times) under a
`~lsst.galmix.fitting.timing.StageTimer`, and the CPU per object of the replay with the least total is
printed by stage: ``engine`` (the C++ fits), ``solve`` (engine problems set up and read), ``refine``
(stamp growth and the local-sky test, with the model drawing they need), ``stamps`` (cutting, moments,
starting points), ``residuals`` (residual-source search).

Usage: ``python benchmarks/bench_fit.py [--quick] [--psf-gauss N] [--seed S] [--residual-threshold T]
[--stages]``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import galsim
import numpy as np
from lsst.galmix import engine as ge
from lsst.galmix.fitting.blend import BandImage, ObjectInput
from lsst.galmix.fitting.config import SourceFitConfig
from lsst.galmix.fitting.psf import fit_psf_image
from lsst.galmix.fitting.stages import fit_groups
from lsst.galmix.fitting.testing import GalaxyTruth, noise_sigma_for_snr, psf_kernel, render_stamp
from lsst.galmix.fitting.timing import StageTimer
from lsst.galmix.models.definitions import get_model
from lsst.galmix.schema import FlagSet
from scipy.special import gamma, gammaincinv
from threadpoolctl import threadpool_limits

PIXEL = 0.2
SN_BINS = [(20, 50), (50, 200), (200, 1001)]
MAG0 = 31.4
# galmix's SourceFitConfig settings from the command line (``--stamp-sigmas``, ``--residual-threshold``).
CONFIG = {"stamp_sigmas": SourceFitConfig().stamp_sigmas, "residual_threshold": SourceFitConfig().residual_threshold}


@dataclass
class Case:
    """One fitted object: truth, per-code results (mag, ln reff, n, time, failed)."""

    truth: GalaxyTruth
    snr: float
    res: dict


def _sigma_mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else np.nan


def _moffat(fwhm_arcsec: float) -> galsim.GSObject:
    return galsim.Moffat(beta=3.5, fwhm=fwhm_arcsec / PIXEL)


def _stamp_size(t: GalaxyTruth, fwhm_pix: float) -> int:
    return int(min(2 * int(max(6 * t.reff * max(t.n, 1.0) ** 0.5, 4 * fwhm_pix)) + 1, 121))


def _galmix_fit(images, psfs, t, model, cfg) -> tuple[dict, float]:
    obj = ObjectInput(t.x, t.y, None, 0, psfs, FlagSet())
    m = get_model(model)
    # What `fit_groups` was given, for the replay of ``--stages``.
    call = (m, [[0]], {0: obj}, images, None, cfg)
    t0, c0 = time.perf_counter(), time.thread_time()
    (fit,) = fit_groups(*call)
    out = None if fit.outcomes is None else fit.outcomes[0]
    dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
    if out is None or out.flags.fatal:
        return {"failed": True, "cpu": cpu, "call": call}, dt
    th = out.theta
    res = {"failed": False, "flux": out.fluxes[:, 0], "cpu": cpu, "call": call}
    if m.has_shape:
        i = 2 if m.free_centroid else 0
        res["lnreff"] = th[i]
        res["n"] = th[i + 3] if m.components[0].free_n else np.nan
    return res, dt


def _imfit_sersic(img, sigma, psf_img, t) -> tuple[dict, float]:
    import pyimfit

    q0 = float(np.clip(t.q * 0.9, 0.1, 1.0))
    n0, re0 = 2.0, t.reff * 1.2
    bn = gammaincinv(2 * n0, 0.5)
    ie0 = t.flux / (2 * np.pi * n0 * np.exp(bn) * bn ** (-2 * n0) * gamma(2 * n0) * re0**2 * q0)
    pa0 = np.degrees(t.position_angle) - 90.0 + 10.0
    model = {"function_sets": [{"label": "fs", "X0": [t.x + 1, t.x - 4, t.x + 6],
                                "Y0": [t.y + 1, t.y - 4, t.y + 6],
                                "function_list": [{"name": "Sersic", "label": "", "parameters": {
                                    "PA": [pa0, pa0 - 180, pa0 + 180], "ell": [1 - q0, 0.0, 0.95],
                                    "n": [n0, 0.3, 10.0], "I_e": [ie0, 0.0, 1e3 * ie0 + 1e3],
                                    "r_e": [re0, 0.05, 200.0]}}]}]}
    t0 = time.perf_counter()
    try:
        fitter = pyimfit.Imfit(model, psf=psf_img, maxThreads=1)
        fitter.fit(img, error=np.full(img.shape, sigma), error_type="sigma")
        dt = time.perf_counter() - t0
        p = fitter.getRawParameters()
        ok = bool(fitter.fitConverged)
        flux = float(fitter.getModelFluxes()[0])
        return {"failed": not ok, "flux": np.array([flux]), "lnreff": np.log(p[6]), "n": p[4]}, dt
    except Exception:  # noqa: BLE001 - a pyimfit failure is a benchmark outcome
        return {"failed": True}, time.perf_counter() - t0


def _imfit_point(img, sigma, psf_img, t) -> tuple[dict, float]:
    import pyimfit

    model = {"function_sets": [{"label": "fs", "X0": [t.x + 0.5, t.x - 3, t.x + 3], "Y0": [t.y + 0.5, t.y - 3, t.y + 3],
                                "function_list": [{"name": "PointSource", "label": "", "parameters": {
                                    "I_tot": [t.flux * 1.2, 0.0, t.flux * 100]}}]}]}
    t0 = time.perf_counter()
    try:
        fitter = pyimfit.Imfit(model, psf=psf_img, maxThreads=1)
        fitter.fit(img, error=np.full(img.shape, sigma), error_type="sigma")
        dt = time.perf_counter() - t0
        return {"failed": not fitter.fitConverged, "flux": np.array([fitter.getRawParameters()[2]])}, dt
    except Exception:  # noqa: BLE001
        return {"failed": True}, time.perf_counter() - t0


def _draw_truth(rng, snr_range=(20, 1000)) -> tuple[GalaxyTruth, float, float]:
    n = float(np.exp(rng.uniform(np.log(0.5), np.log(6.0))))
    reff = rng.uniform(0.3, 2.0) / PIXEL
    fwhm = rng.uniform(0.6, 0.8) / PIXEL
    snr = float(np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]))))
    t = GalaxyTruth(0.0, 0.0, 1000.0, n=n, reff=reff, q=rng.uniform(0.2, 1.0), position_angle=rng.uniform(0, np.pi))
    return t, fwhm, snr


def single_band(n_gal: int, rng, psf_gauss: int, with_imfit: bool) -> tuple[list[Case], list[float]]:
    cases, psf_times = [], []
    cfg = SourceFitConfig(pixel_scale=PIXEL, **CONFIG)
    for _ in range(n_gal):
        t, fwhm, snr = _draw_truth(rng)
        size = _stamp_size(t, fwhm)
        t.x = t.y = (size - 1) / 2 + rng.uniform(-0.5, 0.5)
        psf = _moffat(fwhm * PIXEL)
        clean = render_stamp([t], psf, (size, size))
        sigma = noise_sigma_for_snr(clean, snr)
        img = clean + rng.normal(0, sigma, clean.shape)
        t0 = time.perf_counter()
        pf = fit_psf_image(psf_kernel(psf, 41), psf_gauss)
        psf_times.append(time.perf_counter() - t0)
        images = [BandImage(img, np.full(img.shape, sigma**2), None, (0, 0))]
        res = {}
        res["galmix"], res["galmix_time"] = _galmix_fit(images, [pf.mixture], t, "sersic", cfg)
        if with_imfit:
            pimg = psf.drawImage(nx=41, ny=41, scale=1.0, method="no_pixel").array
            res["pyimfit"], res["pyimfit_time"] = _imfit_sersic(img, sigma, pimg / pimg.sum(), t)
        cases.append(Case(t, snr, res))
    return cases, psf_times


def stars(n_star: int, rng, psf_gauss: int, with_imfit: bool) -> list[Case]:
    cases = []
    cfg = SourceFitConfig(pixel_scale=PIXEL, **CONFIG)
    for _ in range(n_star):
        fwhm = rng.uniform(0.6, 0.8) / PIXEL
        snr = float(np.exp(rng.uniform(np.log(20), np.log(1000))))
        size = 41
        t = GalaxyTruth(20 + rng.uniform(-0.5, 0.5), 20 + rng.uniform(-0.5, 0.5), 1000.0, n=0)
        psf = _moffat(fwhm * PIXEL)
        clean = render_stamp([t], psf, (size, size))
        sigma = noise_sigma_for_snr(clean, snr)
        img = clean + rng.normal(0, sigma, clean.shape)
        mix = fit_psf_image(psf_kernel(psf, 41), psf_gauss).mixture
        images = [BandImage(img, np.full(img.shape, sigma**2), None, (0, 0))]
        res = {}
        res["galmix"], res["galmix_time"] = _galmix_fit(images, [mix], t, "point", cfg)
        if with_imfit:
            pimg = psf.drawImage(nx=41, ny=41, scale=1.0, method="no_pixel").array
            res["pyimfit"], res["pyimfit_time"] = _imfit_point(img, sigma, pimg / pimg.sum(), t)
        cases.append(Case(t, snr, res))
    return cases


def three_band(n_gal: int, rng, psf_gauss: int, with_imfit: bool) -> list[Case]:
    bands = ["g", "r", "i"]
    fwhms = {"g": 0.8, "r": 0.7, "i": 0.6}
    cases = []
    cfg = SourceFitConfig(pixel_scale=PIXEL, **CONFIG)
    mixes = {b: fit_psf_image(psf_kernel(_moffat(f), 41), psf_gauss).mixture for b, f in fwhms.items()}
    for _ in range(n_gal):
        t, _, snr = _draw_truth(rng, (50, 1000))
        colours = {"g": 10 ** (-0.4 * rng.uniform(0.2, 1.2)), "r": 1.0, "i": 10 ** (0.4 * rng.uniform(0.1, 0.6))}
        size = _stamp_size(t, fwhms["g"] / PIXEL)
        t.x = t.y = (size - 1) / 2 + rng.uniform(-0.5, 0.5)
        images, imgs, sigmas = [], {}, {}
        for b in bands:
            tb = GalaxyTruth(**{**t.__dict__, "flux": t.flux * colours[b]})
            clean = render_stamp([tb], _moffat(fwhms[b]), (size, size))
            sigma = noise_sigma_for_snr(clean, snr * np.sqrt(colours[b]))
            imgs[b] = clean + rng.normal(0, sigma, clean.shape)
            sigmas[b] = sigma
            images.append(BandImage(imgs[b], np.full(clean.shape, sigma**2), None, (0, 0)))
        res = {"colours": colours}
        res["galmix"], res["galmix_time"] = _galmix_fit(images, [mixes[b] for b in bands], t, "sersic", cfg)
        if with_imfit:
            fl, tt, failed = [], 0.0, False
            for b in bands:
                pimg = _moffat(fwhms[b]).drawImage(nx=41, ny=41, scale=1.0, method="no_pixel").array
                tb = GalaxyTruth(**{**t.__dict__, "flux": t.flux * colours[b]})
                r, dt = _imfit_sersic(imgs[b], sigmas[b], pimg / pimg.sum(), tb)
                tt += dt
                failed |= r["failed"]
                fl.append(r.get("flux", [np.nan])[0])
            res["pyimfit"], res["pyimfit_time"] = {"failed": failed, "flux": np.array(fl)}, tt
        cases.append(Case(t, snr, res))
    return cases


def patch_throughput(rng, psf_gauss: int, n_side: int = 6) -> None:
    """End-to-end ``fit_patch`` time per object on a patch of n_side^2 Sersic galaxies (one band)."""
    from lsst.galmix.fitting.patch import fit_patch
    from lsst.galmix.fitting.testing import make_scene

    psf = _moffat(0.7)
    mix = fit_psf_image(psf_kernel(psf, 41), psf_gauss).mixture
    truths = []
    for iy in range(n_side):
        for ix in range(n_side):
            t, _, _ = _draw_truth(rng, (50, 500))
            t.reff = min(t.reff, 6.0)
            t.x, t.y, t.flux = 40 + 80 * ix + rng.uniform(-0.5, 0.5), 40 + 80 * iy + rng.uniform(-0.5, 0.5), 2000.0
            truths.append(t)
    images, objects = make_scene(truths, {"r": psf}, {"r": 1.0}, (80 * n_side, 80 * n_side), {"r": 0.05}, rng)
    for n_threads in (1, 2):
        cfg = SourceFitConfig(pixel_scale=PIXEL, n_threads=n_threads, **CONFIG)
        t0 = time.perf_counter()
        table = fit_patch(images, (0, 0), objects, None, {"r": mix}, "sersic", cfg)
        dt = time.perf_counter() - t0
        print(f"  fit_patch, {len(objects)} Sersic galaxies, 1 band, {n_threads} thread(s): "
              f"{1e3 * dt / len(objects):.2f} ms per object end to end; fatal flags {int(table['sersic_flag'].sum())}")


def _report_times(name: str, cases: list[Case], codes: list[str]) -> None:
    for code in codes:
        ts = np.array([c.res[f"{code}_time"] for c in cases]) * 1e3
        fail = np.mean([c.res[code]["failed"] for c in cases])
        cpu = np.array([c.res[code].get("cpu", np.nan) for c in cases]) * 1e3
        print(f"  {name:12s} {code:8s} time median {np.median(ts):8.2f} ms  p90 {np.percentile(ts, 90):8.2f} ms"
              f"  failures {100 * fail:5.1f}%" + (f"  CPU median {np.median(cpu):6.2f} ms" if code == "galmix" else ""))


def _report_stages(name: str, cases: list[Case], repeats: int = 3) -> None:
    """galmix's CPU per object by stage: the fits of ``cases`` replayed ``repeats`` times under a
    `StageTimer` (the replay with the least total; time outside the library's stages is ``other``). The
    replays reuse the first pass's PSF mixtures, and so what the library keeps per PSF mixture."""
    calls = [c.res["galmix"]["call"] for c in cases]
    best: dict[str, float] | None = None
    for _ in range(repeats):
        timer = StageTimer()
        with timer.active(), timer.stage("other"):
            for call in calls:
                fit_groups(*call)
        if best is None or sum(timer.cpu.values()) < sum(best.values()):
            best = dict(timer.cpu)
    assert best is not None
    n = len(calls)
    split = ", ".join(f"{k} {1e3 * v / n:.3f}" for k, v in sorted(best.items(), key=lambda kv: -kv[1]))
    print(f"  {name:12s} galmix CPU per object by stage (replay, best of {repeats}): "
          f"total {1e3 * sum(best.values()) / n:.3f} ms; {split}")


def _report_accuracy(cases: list[Case], codes: list[str]) -> None:
    print(f"  {'S/N bin':>10s} {'code':8s} {'N':>4s} {'dmag med':>9s} {'sMAD':>7s} {'dlnRe med':>10s} {'sMAD':>7s}"
          f" {'dn med':>7s} {'sMAD':>6s}")
    for lo, hi in SN_BINS:
        sel = [c for c in cases if lo <= c.snr < hi]
        for code in codes:
            ok = [c for c in sel if not c.res[code]["failed"]]
            dmag = np.array([-2.5 * np.log10(c.res[code]["flux"][0] / c.truth.flux) for c in ok])
            dlr = np.array([c.res[code]["lnreff"] - np.log(c.truth.reff) for c in ok])
            dn = np.array([c.res[code]["n"] - c.truth.n for c in ok])
            print(f"  {lo:4d}-{hi - 1:<5d} {code:8s} {len(ok):4d} {np.median(dmag):+9.4f} {_sigma_mad(dmag):7.4f}"
                  f" {np.median(dlr):+10.4f} {_sigma_mad(dlr):7.4f} {np.median(dn):+7.3f} {_sigma_mad(dn):6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 galaxies, 10 stars, 10 three-band galaxies")
    parser.add_argument("--psf-gauss", type=int, default=4, help="Gaussians in galmix's PSF mixtures")
    parser.add_argument("--no-imfit", action="store_true", help="skip pyimfit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stamp-sigmas", type=float, default=SourceFitConfig().stamp_sigmas,
                        help="galmix stamp half-size in observed-moment sigmas")
    parser.add_argument("--residual-threshold", type=float, default=SourceFitConfig().residual_threshold,
                        help="galmix residual-source threshold in sigma (0: no search)")
    parser.add_argument("--stages", action="store_true",
                        help="replay the galmix fits of each galaxy set; print their CPU per object by stage")
    args = parser.parse_args()
    # One BLAS thread, as in `fit_patch`: idle OpenBLAS threads spin on the cores the fits run on.
    threadpool_limits(limits=1, user_api="blas")
    n_gal, n_star, n_3 = (40, 10, 10) if args.quick else (200, 50, 50)
    CONFIG.update(stamp_sigmas=args.stamp_sigmas, residual_threshold=args.residual_threshold)
    codes = ["galmix"] + ([] if args.no_imfit else ["pyimfit"])
    rng = np.random.default_rng(args.seed)
    print(f"galmix engine: {ge.dispatch_info()}; PSF mixtures of {args.psf_gauss} Gaussians; one core; "
          f"load average {os.getloadavg()[0]:.1f}")
    kern = psf_kernel(_moffat(0.7), 41)
    for ng in (2, args.psf_gauss):
        ts, cpu = [], []
        for _ in range(20):
            t0, c0 = time.perf_counter(), time.thread_time()
            fit_psf_image(kern, ng)
            ts.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        print(f"  PSF mixture fit ({ng} Gaussians, 41x41 kernel): median {1e3 * np.median(ts):.2f} ms, "
              f"CPU median {1e3 * np.median(cpu):.2f} ms")
    patch_throughput(np.random.default_rng(args.seed + 1000), args.psf_gauss)
    gal, _ = single_band(n_gal, rng, args.psf_gauss, not args.no_imfit)
    print(f"Single-band Sersic galaxies: {n_gal}")
    _report_times("sersic 1-band", gal, codes)
    if args.stages:
        _report_stages("sersic 1-band", gal)
    _report_accuracy(gal, codes)
    st = stars(n_star, rng, args.psf_gauss, not args.no_imfit)
    print(f"Stars: {n_star}")
    _report_times("point", st, codes)
    for code in codes:
        ok = [c for c in st if not c.res[code]["failed"]]
        hi = [c for c in ok if c.snr >= 200]
        dmag = np.array([-2.5 * np.log10(c.res[code]["flux"][0] / c.truth.flux) for c in ok])
        dhi = np.array([-2.5 * np.log10(c.res[code]["flux"][0] / c.truth.flux) for c in hi])
        print(f"  {code:8s} dmag median {np.median(dmag):+.4f} sMAD {_sigma_mad(dmag):.4f};"
              f" S/N>=200 ({len(hi)}): median {np.median(dhi) if len(hi) else np.nan:+.4f}")
    tb = three_band(n_3, rng, args.psf_gauss, not args.no_imfit)
    print(f"Three-band Sersic galaxies (g r i, per-band PSFs, colours): {n_3}")
    _report_times("sersic 3-band", tb, codes)
    if args.stages:
        _report_stages("sersic 3-band", tb)
    for code in codes:
        ok = [c for c in tb if not c.res[code]["failed"]]
        for b0, b1, i0, i1 in (("g", "r", 0, 1), ("r", "i", 1, 2)):
            d = np.array([-2.5 * np.log10(c.res[code]["flux"][i0] / c.res[code]["flux"][i1])
                          + 2.5 * np.log10(c.res["colours"][b0] / c.res["colours"][b1]) for c in ok])
            print(f"  {code:8s} {b0}-{b1} colour bias {np.median(d):+.4f} sMAD {_sigma_mad(d):.4f} (N={len(ok)})")


if __name__ == "__main__":
    main()

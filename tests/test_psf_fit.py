"""PSF mixture fitting to kernel images."""

import galsim
import numpy as np
from astropy.table import Table
from lsst.galmix.fitting.config import PsfFitConfig, SourceFitConfig
from lsst.galmix.fitting.patch import fit_patch
from lsst.galmix.fitting.psf import fit_psf_image, fit_psf_images_table, nearest_psf, psf_at
from lsst.galmix.fitting.testing import GalaxyTruth, moffat_psf, psf_kernel, render_stamp
from lsst.galmix.schema import PSF_GAUSSIAN_PARAMS, psf_mixture_from_row


def test_gaussian_kernel_recovered_exactly():
    # A pixel-integrated Gaussian evaluated at pixel centres is a Gaussian of variance sigma^2 + 1/12
    # to high accuracy for sigma >~ 1.5 pixel.
    sigma = 2.0
    kern = galsim.Gaussian(sigma=sigma).shear(q=0.7, beta=0.5 * galsim.radians).drawImage(
        nx=35, ny=35, scale=1.0).array
    fit = fit_psf_image(kern, 1)
    assert fit.mixture is not None and not fit.flags.fatal
    assert fit.chi2 < 1e-6
    cov = fit.mixture.covariance()
    assert abs(np.linalg.det(cov) ** 0.25 - np.sqrt(sigma**2 * 1.0 + 1 / 12)) < 0.01
    assert abs(fit.mixture.dx[0]) < 1e-6 and abs(fit.mixture.dy[0]) < 1e-6


def test_moffat_more_gaussians_fit_better_and_fractions_hold_the_light():
    kern = psf_kernel(moffat_psf(3.5), 41)
    chi2, light = [], []
    for n in (1, 2, 3):
        fit = fit_psf_image(kern, n)
        assert fit.mixture is not None and fit.mixture.n_gauss == n
        chi2.append(fit.chi2)
        light.append(fit.mixture.frac.sum())
    # Free amplitudes are kept: their sum is the kernel light the mixture holds (0.90, 0.984, 0.997).
    assert 0.85 < light[0] < light[1] < light[2] < 1.0
    assert chi2[0] > 10 * chi2[1] > 100 * chi2[2]
    assert chi2[1] < 2e-4
    assert fit_psf_image(kern, 1).flags.names() == ["large_chi2"]


def test_bad_kernels_give_flags_not_exceptions():
    for bad in (np.full((21, 21), np.nan), np.zeros((21, 21)), np.zeros((0, 0))):
        fit = fit_psf_image(bad, 2)
        assert fit.mixture is None and "no_data" in fit.flags and fit.flags.fatal


def test_table_roundtrip_and_lookup():
    kern = psf_kernel(moffat_psf(3.0), 31)
    table = fit_psf_images_table([kern, None, kern], [(10.0, 10.0), (50.0, 10.0), (90.0, 10.0)],
                                 cells=[(0, 0), (1, 0), (2, 0)], config=PsfFitConfig(n_gauss=2))
    assert list(table["psf_flag"]) == [False, True, False]
    assert table["psf_no_data_flag"][1]
    mix = psf_mixture_from_row(table[0])
    assert mix.is_valid() and mix.n_gauss == 2
    # The nearest unflagged row is used: (50, 10) is flagged, so a position there gets a neighbour.
    near = psf_at(table, 52.0, 10.0)
    assert near is not None and np.allclose(near.frac, mix.frac)
    assert psf_at(lambda x, y: kern, 0, 0).n_gauss == PsfFitConfig().n_gauss
    assert psf_at(lambda x, y: kern, 0, 0, PsfFitConfig(n_gauss=2)).n_gauss == 2
    assert psf_at(lambda x, y: None, 0, 0) is None


def _star_dmag(n_gauss: int, source_limited: bool) -> float:
    psf = moffat_psf(3.5)
    mix = fit_psf_image(psf_kernel(psf, 41), n_gauss).mixture
    truth = GalaxyTruth(30.3, 30.1, 1e4, n=0)
    shape = (61, 61)
    img = render_stamp([truth], psf, shape)
    # Sky-limited: uniform variance. Source-limited: the source's Poisson variance (peak ~100x the sky).
    var = np.full(shape, 1.0) + (img.clip(0) if source_limited else 0.0)
    objs = Table({"objectId": [1], "x": [truth.x], "y": [truth.y]})
    tab = fit_patch({"r": (img, var, np.zeros(shape, bool))}, (0, 0), objs, None, {"r": mix}, "point",
                    config=SourceFitConfig(stamp_max=30, sky="none"))  # the identity is for fluxes alone
    return float(-2.5 * np.log10(tab["r_psfFlux"][0] / truth.flux))


def test_star_flux_unbiased_with_two_gaussian_psf():
    # The mixture's amplitudes are not renormalised, so the flux of a star is exact in the sky-limited
    # regime although 2 Gaussians miss 1.6% of the Moffat light (renormalised: 0.018 mag faint).
    assert abs(_star_dmag(2, source_limited=False)) < 0.003
    # Source-limited (weights follow the profile) the normal-equation identity no longer holds exactly,
    # but the remaining bias is of the order of the residual power (measured 2e-4 mag).
    assert abs(_star_dmag(2, source_limited=True)) < 0.003


def test_repeated_kernels_are_fitted_once_with_the_rows_of_a_fresh_fit(monkeypatch):
    import lsst.galmix.fitting.psf as psf_module

    narrow, wide = psf_kernel(moffat_psf(3.0), 31), psf_kernel(moffat_psf(4.0), 31)
    kernels = [narrow, wide, narrow.copy(), None, wide.copy(), narrow.copy()]
    positions = [(10.0 * i, 5.0) for i in range(len(kernels))]
    cells = [(i, 0) for i in range(len(kernels))]
    calls = []
    fresh = psf_module.fit_psf_image
    monkeypatch.setattr(psf_module, "fit_psf_image", lambda *a: calls.append(a[0].shape) or fresh(*a))
    table = fit_psf_images_table(kernels, positions, cells)
    assert len(calls) == 3  # narrow, wide and the empty image of the missing cell
    for i, kern in enumerate(kernels):
        fit = fresh(kern if kern is not None else np.zeros((0, 0)), PsfFitConfig().n_gauss)
        row = table[i]
        assert (row["cell_x"], row["x"]) == (i, 10.0 * i)
        assert row["psf_flag"] == (fit.mixture is None)
        if fit.mixture is None:
            continue
        mix = psf_mixture_from_row(row)
        for name in ("frac", "dx", "dy", "xx", "yy", "xy"):
            assert np.array_equal(getattr(mix, name), getattr(fit.mixture, name))
        assert row["psf_chi2"] == fit.chi2 and row["psf_nIter"] == fit.n_iter
    assert table["psf_g0_xx"][0] != table["psf_g0_xx"][1]
    assert str(table["x"].unit) == "pix" and table["psf_chi2"].description


def test_free_centre_refinement_matches_the_catalogue_fit_path():
    # The refinement reads the engine result without the covariance; the catalogue path
    # (`run_problems`) must give the same mixture from the same start.
    from lsst.galmix.fitting import psf as psf_module
    from lsst.galmix.fitting.engine_backend import make_problem, run_problems
    from lsst.galmix.fitting.optimize import BandInput, SourceSpec
    from lsst.galmix.models.definitions import get_model

    # An asymmetric kernel (two Moffats 1.3 pixels apart), where free centres matter.
    kern = 0.7 * psf_kernel(moffat_psf(3.0), 41) + 0.3 * np.roll(psf_kernel(moffat_psf(4.5), 41), (1, 1), (0, 1))
    k = kern / kern.sum()
    concentric = psf_module._fit_concentric(k, 4, 200)
    theta0 = psf_module._mixture_start(concentric.mixture)
    refined = psf_module._fit_scene(k, 4, 200, theta0)
    specs = [SourceSpec(get_model("gauss"), (0.0, 0.0)) for _ in range(4)]
    band = BandInput(k, np.ones_like(k), -20, -20, psf_module._DELTA)
    res = run_problems([make_problem(specs, theta0, [band], psf_module._scene_settings(200))])[0]
    expected = psf_module._mixture(res.theta, res.fluxes[0], 4)
    assert refined is not None and expected is not None
    for name in ("frac", "dx", "dy", "xx", "yy", "xy"):
        assert np.array_equal(getattr(refined.mixture, name), getattr(expected, name))
    assert refined.chi2 == res.chi2 / float((k * k).sum()) and refined.n_iter == res.n_iter
    assert refined.chi2 < concentric.chi2  # the centres moved: the refinement did something


def test_refinement_that_cannot_win_is_not_read():
    # `beat`: a refinement whose residual is not below the fit it would replace gives None (its mixture is
    # never built); one that is below gives the same fit as without `beat`.
    from lsst.galmix.fitting import psf as psf_module

    kern = 0.7 * psf_kernel(moffat_psf(3.0), 41) + 0.3 * np.roll(psf_kernel(moffat_psf(4.5), 41), (1, 1), (0, 1))
    k = kern / kern.sum()
    theta0 = psf_module._mixture_start(psf_module._fit_concentric(k, 4, 200).mixture)
    free = psf_module._fit_scene(k, 4, 200, theta0)
    assert free is not None
    assert psf_module._fit_scene(k, 4, 200, theta0, beat=free.chi2) is None
    below = psf_module._fit_scene(k, 4, 200, theta0, beat=np.nextafter(free.chi2, np.inf))
    assert below is not None and below.chi2 == free.chi2 and below.n_iter == free.n_iter
    for name in ("frac", "dx", "dy", "xx", "yy", "xy"):
        assert np.array_equal(getattr(below.mixture, name), getattr(free.mixture, name))


def _count_refinements(monkeypatch) -> list:
    from lsst.galmix.fitting import psf as psf_module

    calls = []
    real = psf_module._fit_scene

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(psf_module, "_fit_scene", counted)
    return calls


def test_symmetric_kernels_skip_the_free_centre_refinement(monkeypatch):
    # A kernel even under the point reflection about its centre gives free centres nothing to gain: the fit
    # is the concentric one, without a refinement.
    from lsst.galmix.fitting import psf as psf_module

    calls = _count_refinements(monkeypatch)
    for profile in (moffat_psf(3.0).shear(g1=0.08, g2=-0.05), galsim.Kolmogorov(fwhm=3.2).shear(g2=0.04)):
        kern = psf_kernel(profile, 41).astype(float)
        k = kern / kern.sum()
        fit = fit_psf_image(kern, 4)
        concentric = psf_module._fit_concentric(k, 4, 200)
        assert fit.mixture is not None and concentric is not None
        assert fit.chi2 == concentric.chi2 and fit.n_iter == concentric.n_iter
        for name in ("dx", "dy", "xx", "yy", "xy"):
            assert np.array_equal(getattr(fit.mixture, name), getattr(concentric.mixture, name))
    assert calls == []


def test_asymmetric_kernels_are_refined_and_the_gain_is_bounded_by_the_odd_part(monkeypatch):
    # Odd parts from rounding-level up: every one of these kernels is refined; what the refinement gains
    # stays below the power of the kernel's odd part (the bound `_centres_fixed_by_symmetry` relies on).
    from lsst.galmix.fitting import psf as psf_module

    calls = _count_refinements(monkeypatch)
    base = psf_kernel(moffat_psf(3.0).shear(g1=0.05), 41).astype(float)
    bump = psf_kernel(galsim.Gaussian(sigma=1.5).shift(1.0, 0.5), 41)
    for eps in (1e-5, 1e-3, 3e-2):
        kern = base + eps * (bump - bump[::-1, ::-1])
        k = kern / kern.sum()
        power = float((k * k).sum())
        odd = 0.25 * float(((k - k[::-1, ::-1]) ** 2).sum()) / power
        concentric = psf_module._fit_concentric(k, 4, 200)
        assert not psf_module._centres_fixed_by_symmetry(k, concentric, power)
        free = psf_module._fit_scene(k, 4, 200, psf_module._mixture_start(concentric.mixture), power)
        assert free is not None and 0 < concentric.chi2 - free.chi2 <= odd
        n = len(calls)
        fit_psf_image(kern, 4)
        assert len(calls) == n + 1
    # With the fit centred on the array, the odd part's power decides (against SYMMETRIC_GAIN of the
    # concentric residual); with its centre off the array's centre, the test does not hold.
    k = base / base.sum()
    power = float((k * k).sum())
    fit = psf_module._fit_concentric(k, 4, 200)
    assert psf_module._centres_fixed_by_symmetry(k, fit, power)
    odd = (bump - bump[::-1, ::-1]).astype(float)  # odd: the odd part of eps * odd is itself
    unit = float((odd * odd).sum())
    for gain, fixed in ((0.9, True), (1.1, False)):
        eps = np.sqrt(gain * psf_module.SYMMETRIC_GAIN * fit.chi2 * power / unit)
        assert psf_module._centres_fixed_by_symmetry(k + eps * odd, fit, power) is fixed
    fit.mixture.dx = fit.mixture.dx + 1e-3
    assert not psf_module._centres_fixed_by_symmetry(k, fit, power)


def test_symmetric_kernel_whose_concentric_fit_stalled_is_still_refined(monkeypatch):
    # 3 Gaussians on a simulated repository's cell kernel (a sheared Moffat, so symmetric): the concentric
    # fit stops with a Gaussian at zero flux, the refinement restarts it and finds a far lower residual.
    from types import SimpleNamespace

    from lsst.galmix.fitting import psf as psf_module
    from lsst.galmix.sim.observing import PsfField

    calls = _count_refinements(monkeypatch)
    field = PsfField(SimpleNamespace(nx=4000, ny=4000, pixel_scale=0.2), "r")
    kern = field.kernel_image(3500.0, 3500.0, 25)
    k = kern / kern.sum()
    concentric = psf_module._fit_concentric(k, 3, 200)
    assert concentric is not None and (concentric.mixture.frac == 0).any()
    assert not psf_module._centres_fixed_by_symmetry(k, concentric, float((k * k).sum()))
    fit = fit_psf_image(kern, 3)
    assert calls == [3] and fit.chi2 < 0.1 * concentric.chi2


def test_kernel_finiteness():
    # A NaN or infinite pixel is no data; finite pixels whose sum overflows are data (not a flux-less
    # kernel either way: no mixture).
    for bad in (np.nan, np.inf, -np.inf):
        kern = psf_kernel(moffat_psf(3.0), 21)
        kern[3, 4] = bad
        assert "no_data" in fit_psf_image(kern, 2).flags
    huge = np.full((21, 21), 1e308)
    with np.errstate(over="ignore"):  # the sum overflows: that is the case tested
        fit = fit_psf_image(huge, 2)
    assert "no_data" not in fit.flags and fit.mixture is None and fit.flags.fatal


def test_nearest_psf_reads_each_row_once_and_skips_flagged_rows():
    kern = psf_kernel(moffat_psf(3.0), 31)
    wide = psf_kernel(moffat_psf(4.0), 31)
    table = fit_psf_images_table([kern, None, wide], [(10.0, 10.0), (50.0, 10.0), (90.0, 10.0)],
                                 cells=[(0, 0), (1, 0), (2, 0)], config=PsfFitConfig(n_gauss=2))
    lookup = nearest_psf(table)
    left, right = lookup(12.0, 11.0), lookup(88.0, 9.0)
    assert lookup(5.0, 10.0) is left and lookup(40.0, 10.0) is left  # one mixture per row, shared
    assert lookup(60.0, 10.0) is right  # the flagged row at x = 50 serves no position
    for got, row in ((left, 0), (right, 2)):
        want = psf_mixture_from_row(table[row])
        assert all(np.array_equal(getattr(got, n), getattr(want, n)) for n in PSF_GAUSSIAN_PARAMS)
    table["psf_flag"] = True
    assert nearest_psf(table)(10.0, 10.0) is None

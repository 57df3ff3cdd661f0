"""Optimizer through the bindings: LM + NNLS recovery, fixed parameters, priors, bounds, flags, batch, PSF fit."""

import galsim
import numpy as np
import pytest
from lsst.galmix import _galmix
from lsst.galmix import engine as ge
from scipy.optimize import nnls
from test_engine_model import made_up_spline, psf_mixture

# Every test runs under each kernel instruction set this CPU supports (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("engine_isa")


def sersic_like_scene(n_bands=1):
    spline = ge.SplineProfile(*made_up_spline())
    return ge.Scene([ge.Source([ge.Component(spline, "sersic")])], n_bands)


def noiseless_bands(scene, truth, psfs, shape=(40, 40), x0=0.0, y0=0.0):
    bands = []
    for b in range(scene.n_bands):
        img = ge.scene_image(scene, truth, b, psfs[b], shape, x0, y0)
        bands.append(ge.Band(img, np.full(shape, 2.0), psf=psfs[b], x0=x0, y0=y0))
    return bands


TRUTH = np.array([20.3, 19.6, np.log(3.0), 0.3, -0.2, 2.5, 500.0])
START = TRUTH + np.array([0.7, -0.5, 0.3, -0.2, 0.25, -0.8, 0.0])


def test_lm_recovers_noiseless_model():
    scene = sersic_like_scene()
    shift = np.array([-5.0, 7.0, 0, 0, 0, 0, 0])  # a grid whose element [0, 0] is at pixel (-5, 7)
    truth = TRUTH + shift
    bands = noiseless_bands(scene, truth, [psf_mixture()], x0=-5.0, y0=7.0)
    start = START + shift
    start[6] = 1.0  # the flux start value is irrelevant: it is solved linearly
    res = ge.fit(scene, bands, start)
    assert res.status == ge.FitStatus.CONVERGED, res.message
    np.testing.assert_allclose(res.params, truth, rtol=1e-7, atol=1e-7)
    assert res.chi2 < 1e-10 * np.sum(bands[0].image ** 2)
    assert res.n_pix == 1600 and res.n_iter >= 2
    # The Fisher matrix is J^T W J at the best fit, over all parameters. It is taken from the last pass
    # of the optimizer, whose fluxes are within 1e-4 (relative) of the final ones (doc/engine.rst).
    _, _, H, _ = scene.normal_equations(res.params, bands)
    np.testing.assert_allclose(res.fisher, H, rtol=1e-4, atol=1e-12 * np.abs(H).max())
    assert res.seconds > 0


def test_multiband_fixed_centroid_and_float32():
    scene = sersic_like_scene(n_bands=3)
    truth = np.concatenate([TRUTH[:6], [300.0, 500.0, 650.0]])
    psfs = [psf_mixture(1.0), psf_mixture(1.4), psf_mixture(0.8, dx=0.05)]
    bands = []
    for b in range(3):
        img = ge.scene_image(scene, truth, b, psfs[b], (40, 40)).astype(np.float32)
        bands.append(ge.Band(img, np.ones((40, 40), np.float32), psf=psfs[b]))
    free = np.ones(scene.n_params, bool)
    free[:2] = False
    start = np.concatenate([truth[:2], START[2:6], [1.0, 1.0, 1.0]])
    res = ge.fit(scene, bands, start, free=free)
    assert res.status == ge.FitStatus.CONVERGED, res.message
    assert tuple(res.params[:2]) == tuple(truth[:2])
    # float32 data limit the precision of the recovered values.
    np.testing.assert_allclose(res.params, truth, rtol=2e-5, atol=2e-5)


def test_flux_only_fit_point_source():
    scene = ge.Scene([ge.Source([ge.Component(None, "point")])], n_bands=2)
    truth = np.array([10.2, 11.7, 42.0, 17.0])
    psfs = [psf_mixture(), psf_mixture(1.3)]
    bands = noiseless_bands(scene, truth, psfs, shape=(24, 24))
    free = np.array([False, False, True, True])
    res = ge.fit(scene, bands, np.array([10.2, 11.7, 0.0, 0.0]), free=free)
    assert res.status == ge.FitStatus.CONVERGED and res.n_iter == 0
    np.testing.assert_allclose(res.params, truth, rtol=1e-12)
    # With a free centroid it converges from an offset start too.
    res = ge.fit(scene, bands, np.array([10.9, 11.1, 0.0, 0.0]))
    assert res.status == ge.FitStatus.CONVERGED, res.message
    np.testing.assert_allclose(res.params, truth, rtol=1e-8)


def test_fluxes_are_non_negative():
    # Two-component model whose second component is absent from the data.
    spline = ge.SplineProfile(*made_up_spline())
    disk = ge.FixedProfile([1.0], [2.0])
    scene = ge.Scene([ge.Source([ge.Component(spline), ge.Component(disk)])], 1)
    truth = np.array([20.3, 19.6, np.log(3.0), 0.3, -0.2, 2.5, np.log(2.0), 0.0, 0.1, 500.0, 0.0])
    bands = noiseless_bands(scene, truth, [psf_mixture()])
    # Data minus a bit of an extended component: unconstrained least squares would want negative flux.
    extra = ge.scene_image(scene, np.array([*truth[:9], 0.0, 30.0]), 0, psf_mixture(), (40, 40))
    band = ge.Band(bands[0].image - extra, bands[0].sigma_inv, psf=psf_mixture())
    free = np.ones(scene.n_params, bool)
    free[6:9] = False
    res = ge.fit(scene, [band], truth, free=free)
    assert res.status == ge.FitStatus.CONVERGED
    assert res.params[10] == 0.0 and res.params[9] > 0
    opts = ge.FitOptions()
    opts.nonnegative_fluxes = False
    res2 = ge.fit(scene, [band], truth, free=free, options=opts)
    assert res2.params[10] < 0


def test_nnls_matches_scipy():
    rng = np.random.default_rng(2)
    for _ in range(20):
        A = rng.normal(size=(30, 6))
        y = rng.normal(size=30)
        x = _galmix.nnls_gram(A.T @ A, A.T @ y)
        ref, _ = nnls(A, y)
        np.testing.assert_allclose(x, ref, atol=1e-10)


def test_priors_pull_towards_their_mean():
    scene = sersic_like_scene()
    bands = noiseless_bands(scene, TRUTH, [psf_mixture()])
    noisy = bands[0].image + np.random.default_rng(4).normal(0, 0.1, (40, 40))
    band = ge.Band(noisy, np.full((40, 40), 10.0), psf=psf_mixture())
    free_fit = ge.fit(scene, [band], START)
    opts = ge.FitOptions()
    mean = np.zeros(scene.n_params)
    sigma = np.zeros(scene.n_params)
    mean[2], sigma[2] = np.log(1.5), 1e-5  # tight prior on ln reff
    mean[5], sigma[5] = 4.0, 1e-5  # and on n
    opts.prior_mean, opts.prior_sigma = mean, sigma
    res = ge.fit(scene, [band], START, options=opts)
    assert res.status == ge.FitStatus.CONVERGED
    assert abs(res.params[2] - np.log(1.5)) < 1e-3 and abs(res.params[5] - 4.0) < 1e-3
    # Without the prior the fit stays within its errors (inverse Fisher) of the truth.
    err = np.sqrt(np.diag(np.linalg.inv(free_fit.fisher)))
    assert abs(free_fit.params[2] - TRUTH[2]) < 3 * err[2] and abs(free_fit.params[5] - TRUTH[5]) < 3 * err[5]
    assert abs(free_fit.params[2] - np.log(1.5)) > 10 * err[2]
    prior_term = ((res.params[2] - mean[2]) / sigma[2]) ** 2 + ((res.params[5] - 4.0) / sigma[5]) ** 2
    assert res.objective == pytest.approx(res.chi2 + prior_term, rel=1e-9)
    np.testing.assert_allclose(res.prior_precision[[2, 5]], 1e10)


def test_sersic_index_stays_within_bounds():
    scene = sersic_like_scene()
    truth = TRUTH.copy()
    truth[5] = 6.8  # outside [n_min, n_max] = [0.5, 6]: the fit ends at the bound
    bands = noiseless_bands(scene, truth, [psf_mixture()])
    start = START.copy()
    start[5] = 5.0  # the made-up profile has other local minima in n
    res = ge.fit(scene, bands, start)
    assert res.status in (ge.FitStatus.CONVERGED, ge.FitStatus.MAX_ITER)
    assert 5.9 < res.params[5] <= 6.0


def test_bad_data_gives_status_not_exception():
    scene = sersic_like_scene()
    bands = noiseless_bands(scene, TRUTH, [psf_mixture()])
    img = bands[0].image.copy()
    img[3, 3] = np.nan
    res = ge.fit(scene, [ge.Band(img, bands[0].sigma_inv, psf=psf_mixture())], START)
    assert res.status == ge.FitStatus.ERROR and "image value" in res.message
    res = ge.fit(scene, [ge.Band(img, np.zeros((40, 40)), psf=psf_mixture())], START)
    assert res.status == ge.FitStatus.ERROR and "no pixel" in res.message
    res = ge.fit(scene, bands, START[:-1])
    assert res.status == ge.FitStatus.ERROR


def test_batch_threads_match_single_thread():
    scene = sersic_like_scene()
    rng = np.random.default_rng(7)
    problems = []
    for i in range(12):
        truth = TRUTH + np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-0.3, 0.3),
                                  rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(-1, 1), 0.0])
        bands = noiseless_bands(scene, truth, [psf_mixture()])
        noisy = bands[0].image + rng.normal(0, 0.5, (40, 40))
        problems.append(ge.FitProblem(scene, [ge.Band(noisy, np.full((40, 40), 2.0), psf=psf_mixture())], START))
    bad = np.full((40, 40), np.nan)
    problems.insert(5, ge.FitProblem(scene, [ge.Band(bad, np.ones((40, 40)), psf=psf_mixture())], START))
    single = ge.fit_batch(problems, n_threads=1)
    multi = ge.fit_batch(problems, n_threads=3)
    assert single[5].status == multi[5].status == ge.FitStatus.ERROR
    for a, b, p in zip(single, multi, problems):
        assert a.status == b.status and a.n_iter == b.n_iter
        np.testing.assert_array_equal(a.params, b.params)
        if a.status == ge.FitStatus.CONVERGED:
            assert a.chi2 == pytest.approx(scene.chi2(a.params, p.bands), rel=1e-9)
    assert sum(r.status == ge.FitStatus.CONVERGED for r in single) == 12


def moffat_kernel(size=41, fwhm=3.5, beta=3.0, e1=0.05, e2=-0.03):
    psf = galsim.Moffat(beta=beta, fwhm=fwhm).shear(e1=e1, e2=e2)
    return psf.drawImage(nx=size, ny=size, scale=1.0).array


@pytest.mark.parametrize("n_gauss", [1, 2, 3, 4])
def test_psf_fit_of_moffat_kernel(n_gauss):
    kernel = moffat_kernel()
    c = (kernel.shape[0] - 1) / 2
    res = ge.fit_psf(kernel, n_gauss, x0=-c, y0=-c)
    assert res.status == ge.FitStatus.CONVERGED, res.message
    g = res.gaussians
    assert g.shape == (n_gauss, 6)
    assert g[:, 0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(g[:, 1:3], 0.0, atol=0.01)  # the kernel is centred (one shared centre)
    model = ge.render_image(g * [res.flux, 1, 1, 1, 1, 1], kernel.shape, -c, -c)
    resid = np.abs(model - kernel).max() / kernel.max()
    assert res.chi2 == pytest.approx(np.sum((model - kernel) ** 2), rel=1e-6)
    # More Gaussians describe the Moffat wings better.
    assert resid < {1: 0.1, 2: 0.015, 3: 0.003, 4: 0.001}[n_gauss]


def test_psf_fit_bad_input():
    res = ge.fit_psf(np.zeros((11, 11)), 2)
    assert res.status == ge.FitStatus.ERROR and "positive flux" in res.message
    res = ge.fit_psf(moffat_kernel(), 5)
    assert res.status == ge.FitStatus.ERROR


def test_reported_chi2_is_exact_when_a_component_collapses():
    """A start where LM drives one Gaussian far below a pixel (huge Gram entries): the chi2 the fitter
    reports and optimises must still be the true chi2 of its parameters."""
    kernel = moffat_kernel()
    prof = ge.FixedProfile([1.0], [1.0])
    scene = ge.Scene([ge.Source([ge.Component(prof)] * 3)], 1)
    band = ge.Band(kernel, None, psf=np.array([[1.0, 0, 0, 0, 0, 0]]), x0=-20, y0=-20)
    sizes = 0.5 * 2.39 * np.array([0.6, 1.2, 2.5])
    p0 = np.concatenate([[0.0, 0.0], np.ravel([[np.log(s), 0.0, 0.0] for s in sizes]), np.full(3, 1 / 3)])
    res = ge.fit(scene, [band], p0, options=ge.default_psf_fit_options())
    assert res.status == ge.FitStatus.CONVERGED, res.message
    assert res.chi2 == pytest.approx(scene.chi2(res.params, [band]), rel=1e-9)
    assert res.chi2 < 1e-3 * np.sum(kernel**2)  # a 2-Gaussian-quality local minimum, not a collapse


def test_blend_of_two_sources_with_per_source_psfs():
    spline = ge.SplineProfile(*made_up_spline())
    disk = ge.FixedProfile([0.6, 0.4], [0.7, 1.6])
    scene = ge.Scene([ge.Source([ge.Component(spline, "sersic")]),
                      ge.Source([ge.Component(disk, "disk"), ge.Component(None, "point")])], n_bands=2)
    truth = np.array([18.2, 20.5, np.log(2.5), 0.3, -0.2, 2.5, 400.0, 300.0,
                      25.1, 22.4, np.log(3.0), -0.25, 0.1, 250.0, 350.0, 60.0, 20.0])
    psfs = [psf_mixture(), [psf_mixture(1.3), psf_mixture(1.2, dx=0.1)]]
    bands = noiseless_bands(scene, truth, psfs)
    start = truth + np.array([0.4, -0.3, 0.2, -0.1, 0.1, 0.5, 0, 0, -0.3, 0.4, -0.15, 0.1, -0.1, 0, 0, 0, 0])
    res = ge.fit(scene, bands, start)
    assert res.status == ge.FitStatus.CONVERGED, res.message
    np.testing.assert_allclose(res.params, truth, rtol=1e-6, atol=1e-6)
    # Errors: the inverse Fisher matrix exists and is positive definite for the blend.
    cov = np.linalg.inv(res.fisher)
    assert np.all(np.diag(cov) > 0)
    # A fixed flux stays in the model at its value while the others are solved around it.
    free = np.ones(scene.n_params, bool)
    free[scene.flux_index(1, 1, 0)] = False
    start_fixed = start.copy()
    start_fixed[scene.flux_index(1, 1, 0)] = truth[scene.flux_index(1, 1, 0)]
    res = ge.fit(scene, bands, start_fixed, free=free)
    assert res.status == ge.FitStatus.CONVERGED, res.message
    np.testing.assert_allclose(res.params, truth, rtol=1e-6, atol=1e-6)


def test_python_threads_share_the_engine():
    """Evaluation releases the GIL; concurrent calls from Python threads give the serial answers."""
    from concurrent.futures import ThreadPoolExecutor

    scene = sersic_like_scene()
    bands = noiseless_bands(scene, TRUTH, [psf_mixture()])
    params = [START + 0.01 * i for i in range(8)]
    serial = [scene.normal_equations(p, bands) for p in params]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = list(pool.map(lambda p: scene.normal_equations(p, bands), params))
    for a, b in zip(serial, parallel):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_general_bounds_on_size():
    scene = sersic_like_scene()
    bands = noiseless_bands(scene, TRUTH, [psf_mixture()])
    opts = ge.FitOptions()
    lower = np.full(scene.n_params, -np.inf)
    upper = np.full(scene.n_params, np.inf)
    lower[2], upper[2] = np.log(1.0), np.log(2.5)  # truth ln(3) is outside the box
    opts.lower, opts.upper = lower, upper
    start = START.copy()
    start[2] = np.log(2.0)
    res = ge.fit(scene, bands, start, options=opts)
    assert res.status in (ge.FitStatus.CONVERGED, ge.FitStatus.MAX_ITER), res.message
    assert np.log(1.0) <= res.params[2] <= np.log(2.5)
    # The index trades against the size: the constrained minimum is at least as good as the best fit
    # with the size held at the bound the truth lies beyond.
    at_bound = start.copy()
    at_bound[2] = np.log(2.5)
    free = np.ones(scene.n_params, bool)
    free[2] = False
    pinned = ge.fit(scene, bands, at_bound, free=free, options=opts)
    assert res.chi2 <= pinned.chi2 * (1 + 1e-6)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(res.params, TRUTH, rtol=1e-3)
    bad = ge.FitOptions()
    bad.lower = lower[:3]
    bad.upper = upper[:3]
    assert ge.fit(scene, bands, start, options=bad).status == ge.FitStatus.ERROR


@pytest.mark.parametrize(
    "field, bad",
    [("lambda0", 0.0), ("lambda0", -1.0), ("lambda0", np.nan), ("lambda0", np.inf), ("lambda0", 1e300),
     ("max_iter", -1), ("max_iter", 10**7), ("max_eval", 0), ("ftol", -1e-3), ("ftol", np.nan),
     ("xtol", np.inf), ("n_min", 0.0), ("n_min", np.nan), ("n_max", -2.0), ("n_max", np.inf)],
)
def test_fit_options_are_validated_on_assignment(field, bad):
    """lambda0 = 0, negative or NaN made fit() loop forever with the GIL released."""
    opts = ge.FitOptions()
    before = getattr(opts, field)
    with pytest.raises(ValueError, match=f"FitOptions.{field} must be"):
        setattr(opts, field, bad)
    assert getattr(opts, field) == before  # a refused value leaves the option unchanged


def test_fit_option_arrays_and_flags_are_validated():
    opts = ge.FitOptions()
    with pytest.raises(ValueError, match="prior_mean must be finite"):
        opts.prior_mean = np.array([0.0, np.nan])
    with pytest.raises(ValueError, match="prior_sigma must be not NaN"):
        opts.prior_sigma = np.array([np.nan])
    with pytest.raises(ValueError, match="lower must be not NaN"):
        opts.lower = np.array([np.nan])
    with pytest.raises(ValueError, match="must be a 1-d array"):
        opts.upper = np.zeros((2, 2))
    with pytest.raises(TypeError, match="must be a bool"):
        opts.nonnegative_fluxes = None
    opts.prior_sigma = np.array([np.inf, -1.0])  # documented "no prior" values stay allowed
    opts.nonnegative_fluxes = np.bool_(False)
    assert not opts.nonnegative_fluxes
    # n_min < n_max is a condition between two fields: checked when fitting, so either may be set first.
    opts.n_min, opts.n_max = 7.0, 9.0
    opts.n_max, opts.n_min = 3.0, 4.0
    scene = sersic_like_scene()
    bands = noiseless_bands(scene, TRUTH, [psf_mixture()])
    res = ge.fit(scene, bands, START, options=opts)
    assert res.status == ge.FitStatus.ERROR and "n_max must be greater than n_min" in res.message


def test_evaluation_cap_ends_the_fit():
    scene = sersic_like_scene()
    bands = noiseless_bands(scene, TRUTH, [psf_mixture()])
    opts = ge.FitOptions()
    opts.ftol = opts.xtol = 0.0
    opts.max_eval = 5
    res = ge.fit(scene, bands, START, options=opts)
    assert res.status == ge.FitStatus.MAX_ITER and res.message == "maximum evaluations reached"
    assert res.n_eval == 5 and np.isfinite(res.chi2)
    full = ge.fit(scene, bands, START)
    assert full.status == ge.FitStatus.CONVERGED and full.n_eval > full.n_iter


def test_fast_exp_overflows_like_std_exp():
    x = np.array([709.0, 709.5, 709.78, 709.7827, 709.783, 710.0, 711.0, 1e4, np.inf])
    ours = _galmix.fast_exp(x)
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    assert np.isinf(ours[4:]).all() and np.isinf(ref[4:]).all()
    np.testing.assert_allclose(ours[:4], ref[:4], rtol=4 * np.finfo(float).eps)
    assert _galmix.fast_exp(np.array([710.0]))[0] == np.inf
    assert np.isnan(_galmix.fast_exp(np.array([np.nan]))[0])


def _slow_problems(n):
    scene = sersic_like_scene()
    bands = noiseless_bands(scene, TRUTH, [psf_mixture()], shape=(60, 60))
    opts = ge.FitOptions()
    opts.ftol = opts.xtol = 0.0
    opts.max_iter = 10**6
    opts.max_eval = 10**7
    return [ge.FitProblem(scene, bands, START, options=opts) for _ in range(n)]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_ctrl_c_interrupts_fit_batch(n_threads):
    """Long C++ calls poll for signals: Ctrl-C (here interrupt_main) ends fit_batch with KeyboardInterrupt."""
    import _thread
    import signal
    import threading
    import time

    assert threading.current_thread() is threading.main_thread()
    problems = _slow_problems(2000)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # xdist workers may ignore SIGINT
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ge.fit_batch(problems, n_threads=n_threads)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert time.perf_counter() - start < 20.0  # the uninterrupted batch takes minutes


def test_fit_batch_survives_thread_creation_failure(tmp_path):
    """Under an address-space limit pthread_create fails: the batch runs on the threads it has."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import resource, sys
        import numpy as np
        sys.path.insert(0, {tests!r})
        from test_engine_fit import sersic_like_scene, noiseless_bands, TRUTH, START, psf_mixture
        from lsst.galmix import engine as ge
        scene = sersic_like_scene()
        bands = noiseless_bands(scene, TRUTH, [psf_mixture()], shape=(24, 24))
        problems = [ge.FitProblem(scene, bands, START) for _ in range(64)]
        reference = ge.fit_batch(problems[:1], n_threads=1)[0]
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize")) * 1024
        # Room for a few thread stacks (8 MiB each) but not for 63.
        resource.setrlimit(resource.RLIMIT_AS, (vm + 48 * 2**20, resource.RLIM_INFINITY))
        results = ge.fit_batch(problems, n_threads=64)
        assert len(results) == 64
        assert all(r.status == ge.FitStatus.CONVERGED for r in results), {{r.message for r in results}}
        assert all(np.array_equal(r.params, reference.params) for r in results)
        print("ok")
        """
    ).format(tests=str(__import__("pathlib").Path(__file__).parent))
    # The normal build: under `make sanitize` AddressSanitizer's own allocator cannot live with RLIMIT_AS.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_nnls_gram_refuses_or_survives_overflow():
    """A right-hand side near the double range made the active-set step NaN and read idx[-1] (ASan)."""
    rng = np.random.default_rng(4)
    A = rng.normal(size=(5, 3))
    G = A.T @ A
    for b in ([1e308, 1e308, 1e308], [1e308, -1e308, 1e308], [-1e308, 1e308, 1e300]):
        try:
            x = ge.nnls_gram(G, np.array(b))
        except ValueError as e:
            assert "overflows" in str(e)
        else:
            assert np.isfinite(x).all() and (x >= 0).all()
    with pytest.raises(ValueError, match="symmetric"):
        ge.nnls_gram(np.array([[1.0, 2.0], [0.0, 1.0]]), np.ones(2))


@pytest.mark.parametrize("sky", [False, True])
def test_flux_images_give_the_fitted_model_without_a_pass(sky):
    """options.flux_images: per band, the unit-flux models of the sources' fluxes at the returned nonlinear
    parameters, written by the fit's last pass; the fitted fluxes times them are the drawn model of the
    sources (no sky) at the weighted pixels and 0 at masked ones. Off by default; none for a failed fit."""
    spline = ge.SplineProfile(*made_up_spline())
    disk = ge.FixedProfile([0.6, 0.4], [0.7, 1.6])
    sources = [ge.Source([ge.Component(spline, "sersic")]),
               ge.Source([ge.Component(disk, "disk"), ge.Component(None, "point")])]
    scene = ge.Scene(sources, n_bands=2, sky=sky)
    truth = np.zeros(scene.n_params)
    truth[:17] = [18.2, 20.5, np.log(2.5), 0.3, -0.2, 2.5, 400.0, 300.0,
                  25.1, 22.4, np.log(3.0), -0.25, 0.1, 250.0, 350.0, 60.0, 20.0]
    psfs = [psf_mixture(), [psf_mixture(1.3), psf_mixture(1.2, dx=0.1)]]
    rng = np.random.default_rng(3)
    bands, masks = [], []
    for b in range(2):
        image = ge.scene_image(scene, truth, b, psfs[b], (40, 44)) + rng.normal(0.0, 0.5, (40, 44))
        image += 0.3 * sky
        sinv = np.full(image.shape, 2.0)
        sinv[5:9, 3:30] = 0.0  # masked pixels: runs that end and restart within rows
        masks.append(sinv > 0)
        bands.append(ge.Band(image, sinv, psf=psfs[b]))
    start = truth + np.where(np.arange(scene.n_params) < 13, 0.05, 0.0)
    opts = ge.FitOptions()
    assert not opts.flux_images
    assert ge.fit(scene, bands, start, options=opts).flux_images == []
    opts.flux_images = True
    res = ge.fit(scene, bands, start, options=opts)
    assert res.status == ge.FitStatus.CONVERGED, res.message
    assert len(res.flux_images) == 2
    fluxes_only = res.params.copy()
    if sky:
        fluxes_only[[scene.sky_index(b) for b in range(2)]] = 0.0
    for b, (columns, images) in enumerate(res.flux_images):
        assert sorted(columns) == sorted(scene.flux_index(s, c, b) for s, c in ((0, 0), (1, 0), (1, 1)))
        assert images.shape == (3, 40, 44)
        model = np.tensordot(res.params[columns], images, 1)
        drawn = ge.scene_image(scene, fluxes_only, b, psfs[b], (40, 44))
        scale = np.abs(drawn).max()
        np.testing.assert_allclose(model[masks[b]], drawn[masks[b]], rtol=0, atol=1e-10 * scale)
        assert np.all(images[:, ~masks[b]] == 0.0)
    # A fit whose data cannot be fitted returns none.
    bad = [ge.Band(np.full((40, 44), 1e300), np.full((40, 44), 1e10), psf=psfs[b]) for b in range(2)]
    failed = ge.fit(scene, bad, start, options=opts)
    assert failed.status in (ge.FitStatus.NON_FINITE, ge.FitStatus.ERROR) and failed.flux_images == []


def _two_band_problem(scene, truth, psfs, seed):
    rng = np.random.default_rng(seed)
    bands = []
    for b in range(scene.n_bands):
        image = ge.scene_image(scene, truth, b, psfs[b], (40, 40)) + rng.normal(0.0, 0.5, (40, 40))
        bands.append(ge.Band(image, np.full((40, 40), 2.0), psf=psfs[b]))
    return bands


def test_start_fluxes_skip_the_flux_pass_of_a_warm_start():
    """options.start_fluxes: a refit from a fit's parameters (fluxes included) of sources with several
    components linearises its first pass at the given fluxes instead of solving them in a pass of its own:
    one pass fewer, the same solution. Without a positive source flux in params0 the option is ignored."""
    disk = ge.FixedProfile([0.6, 0.4], [0.7, 1.6])
    scene = ge.Scene([ge.Source([ge.Component(disk, "disk"), ge.Component(None, "point")])], n_bands=2)
    truth = np.array([20.3, 19.6, np.log(3.0), 0.3, -0.2, 400.0, 150.0, 300.0, 90.0])
    psfs = [psf_mixture(1.0), psf_mixture(1.3)]
    bands = _two_band_problem(scene, truth, psfs, 12)
    first = ge.fit(scene, bands, np.concatenate([truth[:5] + [0.4, -0.3, 0.2, -0.1, 0.1], np.zeros(4)]))
    assert first.status == ge.FitStatus.CONVERGED, first.message
    warm = first.params + np.array([0.05, -0.04, 0.03, 0.02, -0.02, 0.0, 0.0, 0.0, 0.0])
    warm[5:] *= 1.02  # the fluxes of a neighbouring solution
    opts = ge.FitOptions()
    cold = ge.fit(scene, bands, warm, options=opts)
    opts.start_fluxes = True
    given = ge.fit(scene, bands, warm, options=opts)
    for res in (cold, given):
        assert res.status == ge.FitStatus.CONVERGED, res.message
        np.testing.assert_allclose(res.params, first.params, rtol=1e-5, atol=1e-5)
    assert given.n_eval == cold.n_eval - 1
    assert given.chi2 == pytest.approx(scene.chi2(given.params, bands), rel=1e-10)
    # No positive source flux to linearise at: the fluxes are solved first, as without the option.
    zero = warm.copy()
    zero[5:] = 0.0
    ignored = ge.fit(scene, bands, zero, options=opts)
    opts.start_fluxes = False
    reference = ge.fit(scene, bands, zero, options=opts)
    assert np.array_equal(ignored.params, reference.params) and ignored.n_eval == reference.n_eval


def _sersic_and_point_scene(sky):
    """A Sersic-like source and a point source, one component each, in two bands (optionally a sky): the
    scene, its true parameters and the two bands' PSFs."""
    spline = ge.SplineProfile(*made_up_spline())
    sources = [ge.Source([ge.Component(spline, "sersic")]), ge.Source([ge.Component(None, "point")])]
    scene = ge.Scene(sources, n_bands=2, sky=sky)
    truth = np.zeros(scene.n_params)
    truth[:12] = [18.2, 20.5, np.log(2.5), 0.3, -0.2, 2.5, 400.0, 300.0, 25.1, 22.4, 60.0, 20.0]
    return scene, truth, [psf_mixture(), psf_mixture(1.3)]


@pytest.mark.parametrize("sky", [False, True])
def test_single_component_sources_start_in_one_pass(sky):
    """Sources of one component each start with one pass at unit fluxes, rescaled to the exact fluxes:
    the fit's first normal equations (its Fisher matrix after 0 iterations) and chi2 are those of a pass at
    the solved fluxes; sources with two components take the flux pass first (two passes)."""
    scene, truth, psfs = _sersic_and_point_scene(sky)
    bands = _two_band_problem(scene, truth, psfs, 5)
    linear = np.isin(scene.param_kinds(), [int(ge.ParamKind.FLUX), int(ge.ParamKind.SKY)])
    assert linear.sum() == 4 + 2 * sky
    start = np.where(linear, 0.0, truth + 0.1)
    opts = ge.FitOptions()
    opts.max_iter = 0
    res = ge.fit(scene, bands, start, options=opts)
    assert res.n_eval == 1
    assert np.array_equal(res.params[~linear], start[~linear]) and np.all(res.params[linear] != 0.0)
    chi2, _, H, _ = scene.normal_equations(res.params, bands)
    assert res.chi2 == pytest.approx(chi2, rel=1e-12)
    np.testing.assert_allclose(res.fisher, H, rtol=1e-11, atol=1e-12 * np.abs(H).max())
    # The flux pass first where a source has two components.
    disk = ge.FixedProfile([0.6, 0.4], [0.7, 1.6])
    two = ge.Scene([ge.Source([ge.Component(disk, "disk"), ge.Component(None, "point")])], n_bands=2, sky=sky)
    start2 = np.zeros(two.n_params)
    start2[:5] = [20.3, 19.6, np.log(3.0), 0.3, -0.2]
    assert ge.fit(two, bands, start2, options=opts).n_eval == 2


@pytest.mark.parametrize("sky", [False, True])
def test_fisher_of_single_component_sources_is_the_pass_at_the_final_fluxes(sky):
    """Where every source has one flux per band, the Fisher matrix is the last pass's per-band equations
    rescaled to the final fluxes: that of a pass at the final parameters to rounding (1e-11), whatever the
    fluxes moved by in the last step. With two components in a source it is a pass at fluxes within 1e-4
    of the final ones (or a pass at them)."""
    scene, truth, psfs = _sersic_and_point_scene(sky)
    linear = np.isin(scene.param_kinds(), [int(ge.ParamKind.FLUX), int(ge.ParamKind.SKY)])
    checked = 0
    for seed in range(6):
        bands = _two_band_problem(scene, truth, psfs, seed)
        start = np.where(linear, 0.0, truth + np.where(linear, 0.0, 0.3))
        res = ge.fit(scene, bands, start)
        assert res.status == ge.FitStatus.CONVERGED, res.message
        assert res.n_iter >= 2
        _, _, H, _ = scene.normal_equations(res.params, bands)
        np.testing.assert_allclose(res.fisher, H, rtol=1e-11, atol=1e-13 * np.abs(H).max())
        checked += 1
    assert checked == 6
    disk = ge.FixedProfile([0.6, 0.4], [0.7, 1.6])
    two = ge.Scene([ge.Source([ge.Component(disk, "disk"), ge.Component(None, "point")])], n_bands=2, sky=sky)
    truth2 = np.zeros(two.n_params)
    truth2[:9] = [20.3, 19.6, np.log(3.0), 0.3, -0.2, 400.0, 150.0, 300.0, 90.0]
    bands = _two_band_problem(two, truth2, psfs, 11)
    linear2 = np.isin(two.param_kinds(), [int(ge.ParamKind.FLUX), int(ge.ParamKind.SKY)])
    res = ge.fit(two, bands, np.where(linear2, 0.0, truth2 + 0.2))
    _, _, H, _ = two.normal_equations(res.params, bands)
    np.testing.assert_allclose(res.fisher, H, rtol=2e-4, atol=1e-12 * np.abs(H).max())

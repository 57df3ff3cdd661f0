"""Sparse and dense normal-equation kernels give bit-identical chi2, J^T W J, J^T W r and fits.

The sparse path zeroes, accumulates and rank-updates only the Jacobian column tiles that the Gaussians
evaluated on a block of pixels touch; what it skips are exact zeros added to sums that start at +0, so
every bit must agree with the dense path (``np.array_equal``, not ``allclose``).
"""

import numpy as np
import pytest
from lsst.galmix import _galmix
from lsst.galmix import engine as ge
from test_engine_model import made_up_spline, psf_mixture

# Every test runs under each kernel instruction set this CPU supports (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("engine_isa")


@pytest.fixture
def restore_sparse():
    """Leave the process's sparse/dense choice as the test found it."""
    previous = _galmix.normal_equations_path()
    yield
    _galmix.set_normal_equations_path(previous)


def grid_scene(n_sources: int, n_bands: int = 1, with_point: bool = False) -> tuple[ge.Scene, int]:
    """A scene of ``n_sources`` 3-Gaussian spline sources (and optionally a point source), and the
    number of parameters per extended source."""
    spline = ge.SplineProfile(*made_up_spline())
    sources = [ge.Source([ge.Component(spline, f"s{i}")]) for i in range(n_sources)]
    if with_point:
        sources.append(ge.Source([ge.Component(None, "point")]))
    return ge.Scene(sources, n_bands=n_bands), 6 + n_bands


def grid_params(scene: ge.Scene, n_sources: int, shape: tuple[int, int], rng: np.random.Generator,
                n_bands: int = 1, with_point: bool = False) -> np.ndarray:
    """Sources of varied sizes and shapes on a jittered grid filling ``shape`` (ny, nx)."""
    ny, nx = shape
    cols = int(np.ceil(np.sqrt(n_sources * nx / ny)))
    rows = int(np.ceil(n_sources / cols))
    params = []
    for i in range(n_sources):
        r, c = divmod(i, cols)
        x = (c + 0.5) * nx / cols + rng.uniform(-1.5, 1.5)
        y = (r + 0.5) * ny / rows + rng.uniform(-1.5, 1.5)
        params += [x, y, np.log(rng.uniform(0.6, 3.0)), rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4),
                   rng.uniform(0.8, 4.0)]
        params += list(rng.uniform(50.0, 400.0, n_bands))
    if with_point:
        params += [rng.uniform(2, nx - 2), rng.uniform(2, ny - 2)] + list(rng.uniform(20.0, 80.0, n_bands))
    params = np.array(params)
    assert params.size == scene.n_params
    return params


def noisy_bands(scene: ge.Scene, params: np.ndarray, shape: tuple[int, int], rng: np.random.Generator,
                mask: bool = True) -> list[ge.Band]:
    """Noisy images of every band with varied weights, a masked patch (split pixel runs) and an origin
    off zero."""
    bands = []
    for b in range(scene.n_bands):
        psf = psf_mixture(1.0 + 0.2 * b, dx=0.05 * b)
        model = ge.scene_image(scene, params, b, psf, shape, x0=2.0, y0=-3.0)
        sigma = 0.5 + rng.uniform(0, 1, shape)
        data = model + rng.normal(0, 1, shape) * sigma
        sinv = 1.0 / sigma
        if mask:
            ny, nx = shape
            sinv[ny // 3:ny // 3 + 3, nx // 4:nx // 2] = 0.0
            data[ny // 3:ny // 3 + 3, nx // 4:nx // 2] = np.nan
        bands.append(ge.Band(data, sinv, psf=psf, x0=2.0, y0=-3.0))
    return bands


def both_paths(fn):
    """``fn()`` under the dense and the sparse kernel path; the default (auto) must equal them too."""
    out = {}
    for path in ("dense", "sparse", "auto"):
        _galmix.set_normal_equations_path(path)
        out[path] = fn()
    assert_bitwise(flat(out["dense"]), flat(out["auto"]))
    return out["dense"], out["sparse"]


def flat(result) -> tuple:
    """The arrays of a normal-equations tuple or of a fit result."""
    if isinstance(result, tuple):
        return result
    return result.params, result.chi2, result.fisher


def assert_bitwise(dense, sparse) -> None:
    for d, s in zip(dense, sparse, strict=True):
        d, s = np.asarray(d), np.asarray(s)
        assert d.shape == s.shape
        # Bit patterns, so that -0 and +0 differ too.
        assert np.array_equal(d.view(np.uint64), s.view(np.uint64)), np.abs(d - s).max()


# (sources, bands, stamp (ny, nx), point source): stamps not multiples of any block width (2, 4, 8, 16),
# P from 7 (one source) to 91.
SCENES = [
    (1, 1, (23, 37), False),
    (1, 2, (41, 29), False),
    (2, 1, (30, 53), True),
    (5, 1, (75, 111), False),
    (13, 1, (111, 181), False),
    (9, 3, (107, 113), True),
]


@pytest.mark.parametrize(("n_sources", "n_bands", "shape", "with_point"), SCENES)
def test_normal_equations_bitwise_equal(restore_sparse, n_sources, n_bands, shape, with_point):
    rng = np.random.default_rng(n_sources * 100 + n_bands)
    scene, _ = grid_scene(n_sources, n_bands, with_point)
    params = grid_params(scene, n_sources, shape, rng, n_bands, with_point)
    bands = noisy_bands(scene, params, shape, rng)
    dense, sparse = both_paths(lambda: scene.normal_equations(params, bands))
    assert_bitwise(dense, sparse)
    chi2, _, H, b = sparse
    assert np.isfinite(chi2) and chi2 > 0
    # Not a vacuous comparison: every parameter has data (H's diagonal), and blends have entries that are
    # exactly zero in both paths (sources that share no pixel).
    assert np.all(np.diag(H) > 0) and np.all(b != 0)
    if n_sources >= 5:
        assert np.count_nonzero(H == 0) > H.size // 10, np.count_nonzero(H == 0) / H.size
    # A subset of active parameters: inactive columns are dropped before the kernel.
    active = rng.uniform(size=scene.n_params) < 0.7
    dense, sparse = both_paths(lambda: scene.normal_equations(params, bands, active))
    assert_bitwise(dense, sparse)


def test_raw_normal_equations_bitwise_equal(restore_sparse):
    """The mixture-level binding with derivative columns in scattered tiles and a Gaussian without any."""
    rng = np.random.default_rng(7)
    n_g, P = 12, 40
    mix = np.column_stack([rng.uniform(10, 100, n_g), rng.uniform(0, 57, n_g), rng.uniform(0, 33, n_g),
                           rng.uniform(0.5, 6, n_g), rng.uniform(-0.3, 0.3, n_g), rng.uniform(0.5, 6, n_g)])
    deriv = np.zeros((n_g, 6, P))
    for g in range(n_g - 1):  # the last Gaussian has no derivative: it only adds to the model
        for col in rng.choice(P, size=4, replace=False):
            deriv[g, rng.choice(6, size=rng.integers(1, 4), replace=False), col] = rng.normal(size=1)
    data = rng.normal(0, 1, (33, 57))
    sinv = rng.uniform(0.5, 2.0, (33, 57))
    dense, sparse = both_paths(lambda: _galmix.normal_equations(mix, deriv, data, sinv, 0.5, -0.25))
    assert_bitwise(dense, sparse)


def test_lm_fit_bitwise_equal(restore_sparse):
    rng = np.random.default_rng(11)
    n_sources, shape = 6, (75, 113)
    scene, _ = grid_scene(n_sources)
    truth = grid_params(scene, n_sources, shape, rng)
    bands = noisy_bands(scene, truth, shape, rng, mask=False)
    start = truth.copy()
    start[0::7] += rng.uniform(-0.5, 0.5, n_sources)
    start[2::7] += rng.uniform(-0.2, 0.2, n_sources)
    opts = ge.FitOptions()
    opts.max_iter = 8
    dense, sparse = both_paths(lambda: ge.fit(scene, bands, start, None, opts))
    assert dense.n_iter == sparse.n_iter >= 2
    assert_bitwise(flat(dense), flat(sparse))


def test_switch_reads_back(restore_sparse):
    for path in ("dense", "sparse", "auto"):
        _galmix.set_normal_equations_path(path)
        assert _galmix.normal_equations_path() == path
    with pytest.raises(ValueError, match="unknown normal-equation path"):
        _galmix.set_normal_equations_path("diagonal")
    assert _galmix.normal_equations_path() == "auto"

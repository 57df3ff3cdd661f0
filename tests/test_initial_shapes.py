"""The shape start of a stack of covariances equals that of each covariance on its own, and both agree
with the covariance's ellipse."""

import numpy as np
import pytest
from lsst.galmix.fitting.moments import initial_shape, initial_shapes
from lsst.galmix.models.ellipse import covariance, q_pa_from_covariance, q_pa_from_eta


def _covs(rng: np.random.Generator, n: int) -> np.ndarray:
    sigma, q, pa = rng.uniform(0.2, 6.0, n), rng.uniform(0.05, 1.0, n), rng.uniform(-np.pi, np.pi, n)
    return np.stack([covariance(s, qq, p) for s, qq, p in zip(sigma, q, pa)])


@pytest.mark.parametrize("psf", [None, np.array([[2.0, 0.3], [0.3, 1.5]])])
def test_stack_equals_one_by_one(psf):
    covs = _covs(np.random.default_rng(3), 200)
    ln_r, e1, e2 = initial_shapes(covs, psf, min_sigma=0.25)
    one = np.array([initial_shape(c, psf, min_sigma=0.25) for c in covs])
    # Bit-identical: the PSF fit and the source fits must start from the same numbers.
    assert np.array_equal(np.column_stack([ln_r, e1, e2]), one)


def test_q_pa_from_covariance_stack_and_roundtrip():
    rng = np.random.default_rng(4)
    sigma, q, pa = rng.uniform(0.2, 6.0, 50), rng.uniform(0.05, 1.0, 50), rng.uniform(-1.5, 1.5, 50)
    covs = np.stack([covariance(s, qq, p) for s, qq, p in zip(sigma, q, pa)])
    s2, q2, pa2 = q_pa_from_covariance(covs)
    assert s2.shape == (50,)
    np.testing.assert_allclose(s2, sigma, rtol=1e-12)
    np.testing.assert_allclose(q2, q, rtol=1e-10)
    np.testing.assert_allclose(np.cos(2 * (pa2 - pa)), 1.0, atol=1e-10)
    assert all(q_pa_from_covariance(c) == (s2[i], q2[i], pa2[i]) for i, c in enumerate(covs))
    # A zero covariance is round (q = 1), not NaN.
    assert q_pa_from_covariance(np.zeros((2, 2))) == (0.0, 1.0, 0.0)


def test_unresolved_start_is_floored():
    # A covariance smaller than the PSF's deconvolves to the floor: round, sigma = min_sigma.
    ln_r, e1, e2 = initial_shapes(np.eye(2)[None] * 0.5, np.eye(2), min_sigma=0.3)
    q, _ = q_pa_from_eta(e1, e2)
    np.testing.assert_allclose(np.exp(ln_r), 0.3 * np.sqrt(2 * np.log(2)), rtol=1e-12)
    np.testing.assert_allclose(q, 1.0)

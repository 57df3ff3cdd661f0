"""Sersic mixture tables and their interpolation in n."""

import numpy as np
import pytest
from lsst.galmix.models.sersic import (
    DEFAULT_N_COMPONENTS,
    gaussian_mixture,
    node_mixture,
    point_mixture,
    sersic_mixture,
    sersic_spline,
)
from lsst.galmix.models.sersic_profile import (
    GAUSSIAN_SIGMA_PER_REFF,
    sersic_b,
    sersic_enclosed_fraction,
    sersic_surface_brightness,
)
from lsst.galmix.models.sersic_table import available_n_components, read_table
from scipy.interpolate import PPoly

K_VALUES = [10, 12]
# Dense sampling of the fitted range, off the nodes.
N_DENSE = np.exp(np.linspace(np.log(0.5), np.log(6.0), 2001))[1:-1]


def _mixture_enclosed(radius: np.ndarray, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    return (1.0 - np.exp(-0.5 * (radius[:, None] / s[None, :]) ** 2)) @ w


def test_exact_profile_helpers() -> None:
    assert sersic_b(1.0) == pytest.approx(1.6783469900166605, rel=1e-12)
    for n in (4.0, 6.0):
        # Ciotti & Bertin (1999) asymptotic series, accurate to ~1e-7 at n >= 4.
        assert sersic_b(n) == pytest.approx(2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2), rel=1e-6)
    for n in (0.5, 1.0, 3.3, 6.0):
        assert sersic_enclosed_fraction(1.0, n) == pytest.approx(0.5, abs=1e-14)
    # n = 0.5 is a Gaussian with sigma = reff / sqrt(2 ln 2).
    r = np.linspace(0.0, 5.0, 11)
    np.testing.assert_allclose(
        sersic_enclosed_fraction(r, 0.5), 1 - np.exp(-0.5 * (r / GAUSSIAN_SIGMA_PER_REFF) ** 2), atol=1e-14
    )
    # Surface brightness integrates to the enclosed fraction.
    x = np.linspace(0.0, 2.0, 200001)
    integrand = 2 * np.pi * x * sersic_surface_brightness(x, 2.5)
    integral = np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(x))
    assert integral == pytest.approx(float(sersic_enclosed_fraction(2.0, 2.5)), rel=1e-7)


def test_tables_are_shipped_and_consistent() -> None:
    assert set(K_VALUES) <= set(available_n_components())
    for k in K_VALUES:
        table = read_table(k)
        assert table.n_components == k
        assert table.n[0] == 0.5 and table.n[-1] >= 6.4
        assert np.all(np.diff(table.n) > 0)
        for exact in (0.5, 1.0, 4.0, 6.0):
            assert exact in table.n
        np.testing.assert_allclose(table.weights.sum(axis=1), 1.0, atol=1e-12)
        assert np.all(table.weights > 0)
        # At n = 0.5 exactly the profile is one Gaussian and the components collapse onto its size.
        assert np.all(np.diff(table.sizes[1:], axis=1) > 0)
        assert "L_mix(<r)" in table.metadata["objective"]
        # The stored residuals are what the stored mixtures give.
        radius = np.exp(np.linspace(np.log(1e-4), np.log(40.0), 400))
        for i in (0, 40, 100, table.n.size - 1):
            diff = _mixture_enclosed(radius, table.weights[i], table.sizes[i]) - sersic_enclosed_fraction(
                radius, table.n[i]
            )
            assert np.max(np.abs(diff)) == pytest.approx(table.max_abs[i], rel=1e-6)


@pytest.mark.parametrize("k", K_VALUES)
def test_spline_reproduces_nodes(k: int) -> None:
    table = read_table(k)
    w, s, _, _ = sersic_mixture(table.n, k)
    np.testing.assert_allclose(w, table.weights, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s, table.sizes, rtol=1e-12)


@pytest.mark.parametrize("k", K_VALUES)
def test_ppoly_layout_matches_scipy(k: int) -> None:
    spline = sersic_spline(k)
    m = spline.breaks.size
    assert spline.coeffs.shape == (4, m - 1, 2 * k)
    assert spline.breaks.flags.c_contiguous and spline.coeffs.flags.c_contiguous
    assert spline.breaks.dtype == np.float64 and spline.coeffs.dtype == np.float64
    ppoly = PPoly(spline.coeffs, spline.breaks)
    values, derivatives, inside = spline.values(N_DENSE)
    assert inside.all()
    np.testing.assert_allclose(values, ppoly(np.log(N_DENSE)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        derivatives, ppoly.derivative()(np.log(N_DENSE)) / N_DENSE[:, None], rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("k", K_VALUES)
def test_weights_positive_normalised_sizes_ordered(k: int) -> None:
    w, s, dw_dn, _ = sersic_mixture(N_DENSE, k)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-13)
    np.testing.assert_allclose(dw_dn.sum(axis=-1), 0.0, atol=1e-9)
    assert np.all(w > 0)
    assert np.all(s > 0)
    # Ordered, except that just above n = 0.5, where the largest components converge onto the size of
    # the n = 0.5 Gaussian, neighbours may swap by a fraction of a percent.
    ratio = s[..., 1:] / s[..., :-1]
    assert np.all(ratio[N_DENSE >= 0.51] > 1)
    assert np.all(ratio > 0.99)


@pytest.mark.parametrize("k", K_VALUES)
def test_derivatives_match_finite_differences(k: int) -> None:
    n = N_DENSE[::20]
    h = 1e-6 * n
    _, _, dw_dn, ds_dn = sersic_mixture(n, k)
    w_hi, s_hi, _, _ = sersic_mixture(n + h, k)
    w_lo, s_lo, _, _ = sersic_mixture(n - h, k)
    fd_w = (w_hi - w_lo) / (2 * h[:, None])
    fd_s = (s_hi - s_lo) / (2 * h[:, None])
    # Central differences across a breakpoint see two pieces: compare with their mean derivative scale.
    np.testing.assert_allclose(dw_dn, fd_w, rtol=1e-4, atol=1e-6 * np.abs(dw_dn).max())
    np.testing.assert_allclose(ds_dn, fd_s, rtol=1e-4, atol=1e-6 * np.abs(ds_dn).max())


@pytest.mark.parametrize("k", K_VALUES)
def test_spline_continuous_at_breakpoints(k: int) -> None:
    spline = sersic_spline(k)
    c, b = spline.coeffs, spline.breaks
    dx = np.diff(b)[:, None]
    # Value, first and second derivative at the right end of each piece equal those of the next piece.
    right_value = ((c[0, :-1] * dx[:-1] + c[1, :-1]) * dx[:-1] + c[2, :-1]) * dx[:-1] + c[3, :-1]
    right_slope = (3 * c[0, :-1] * dx[:-1] + 2 * c[1, :-1]) * dx[:-1] + c[2, :-1]
    right_curvature = 6 * c[0, :-1] * dx[:-1] + 2 * c[1, :-1]
    np.testing.assert_allclose(right_value, c[3, 1:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(right_slope, c[2, 1:], rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(right_curvature, 2 * c[1, 1:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k, tolerance", [(10, 2.5e-3), (12, 1.0e-3)])
def test_interpolated_mixture_matches_enclosed_light(k: int, tolerance: float) -> None:
    # Between the nodes the interpolated mixture is as good as at the nodes.
    radius = np.exp(np.linspace(np.log(1e-3), np.log(40.0), 300))
    worst = 0.0
    for n in N_DENSE[::40]:
        w, s, _, _ = sersic_mixture(n, k)
        worst = max(
            worst, np.max(np.abs(_mixture_enclosed(radius, w, s) - sersic_enclosed_fraction(radius, n)))
        )
    assert worst < tolerance


def test_clamped_outside_range() -> None:
    spline = sersic_spline()
    w, s, dw, ds = sersic_mixture([0.3, spline.n_min, 9.0, spline.n_max])
    np.testing.assert_array_equal(w[0], w[1])
    np.testing.assert_array_equal(s[2], s[3])
    assert not dw[0].any() and not ds[0].any() and not dw[2].any() and not ds[2].any()


def test_fixed_profiles() -> None:
    table = read_table(DEFAULT_N_COMPONENTS)
    w, s = node_mixture(1.0)
    np.testing.assert_array_equal(w, table.weights[table.n == 1.0][0])
    np.testing.assert_array_equal(s, table.sizes[table.n == 1.0][0])
    w4, s4 = node_mixture(4.0)
    wi, si, _, _ = sersic_mixture(4.0)
    np.testing.assert_allclose(w4, wi, rtol=1e-12)
    np.testing.assert_allclose(s4, si, rtol=1e-12)
    with pytest.raises(ValueError, match="not a node"):
        node_mixture(1.2345)
    wg, sg = gaussian_mixture()
    # A Gaussian with this sigma has half its light inside reff = 1.
    assert _mixture_enclosed(np.array([1.0]), wg, sg)[0] == pytest.approx(0.5, abs=1e-15)
    wp, sp = point_mixture()
    assert wp.tolist() == [1.0] and sp.tolist() == [0.0]
    # The mixtures at n = 0.5 reproduce that Gaussian's enclosed light.
    radius = np.linspace(0.0, 5.0, 101)
    for k in K_VALUES:
        w, s, _, _ = sersic_mixture(0.5, k)
        np.testing.assert_allclose(
            _mixture_enclosed(radius, w, s), _mixture_enclosed(radius, wg, sg), atol=2e-5
        )


@pytest.mark.parametrize("k", K_VALUES)
def test_profile_derivative_matches_exact_profile(k: int) -> None:
    # What the fitter uses: d L_mix(<r) / dn from the analytic dw/dn, ds/dn, against the exact
    # profile's dL/dn. Just above n = 0.5 the tracks bend sharply and the derivative is poor
    # (doc/sersic.rst); from n = 0.51 it is within 1% of the largest |dL/dn| plus 1e-3, the scale of
    # the enclosed-light residual of the fit changing with n (at n = 6, |dL/dn| <= 0.022).
    radius = np.exp(np.linspace(np.log(1e-3), np.log(40.0), 300))
    for n in np.exp(np.linspace(np.log(0.51), np.log(6.0), 60)):
        w, s, dw_dn, ds_dn = sersic_mixture(n, k)
        gauss = np.exp(-0.5 * (radius[:, None] / s) ** 2)
        d_mixture = (1.0 - gauss) @ dw_dn - (gauss * radius[:, None] ** 2 / s**3) @ (w * ds_dn)
        h = 1e-5 * n
        d_exact = (sersic_enclosed_fraction(radius, n + h) - sersic_enclosed_fraction(radius, n - h)) / (
            2 * h
        )
        assert np.max(np.abs(d_mixture - d_exact)) < 0.01 * np.max(np.abs(d_exact)) + 1e-3

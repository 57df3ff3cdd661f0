"""Truth catalogue: schema, determinism, populations and the exact total half-light radius."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from lsst.galmix.analysis.stats import flux_to_mag
from lsst.galmix.data import SIZES, TractGeometry
from lsst.galmix.sim.halflight import composite_half_light_radius
from lsst.galmix.sim.render import galaxy_profile
from lsst.galmix.sim.truth import TruthConfig, make_truth
from scipy.spatial import cKDTree

# doc/conventions.rst, truth_summary.
EXPECTED_COLUMNS = (
    ["id", "ra", "dec", "x", "y"]
    + [f"flux_{b}" for b in "ugrizy"]
    + ["is_pointsource", "truth_type", "is_unique_truth_entry", "redshift"]
    + ["bulge_reff", "disk_reff", "bulge_q", "disk_q", "bulge_position_angle", "disk_position_angle"]
    + [f"bulge_frac_{b}" for b in "ugrizy"]
    + ["reff"]
)


@pytest.fixture(scope="module")
def geometry():
    return TractGeometry(SIZES["small"])


@pytest.fixture(scope="module")
def truth(geometry):
    return make_truth(geometry, seed=5)


def test_columns_units_descriptions(truth):
    assert sorted(truth.colnames) == sorted(EXPECTED_COLUMNS)
    assert truth["flux_r"].unit == "nJy"
    assert truth["reff"].unit == "arcsec"
    assert truth["bulge_position_angle"].unit == "deg"
    assert all(truth[c].description for c in truth.colnames)
    assert truth["id"].dtype == np.int64
    assert len(np.unique(truth["id"])) == len(truth)


def test_deterministic_from_seed():
    geometry = TractGeometry(SIZES["ci"])
    truth = make_truth(geometry, seed=5)
    again = make_truth(geometry, seed=5)
    other = make_truth(geometry, seed=6)
    assert np.array_equal(np.asarray(truth["x"]), np.asarray(again["x"]))
    assert np.array_equal(np.asarray(truth["flux_g"]), np.asarray(again["flux_g"]))
    assert len(other) != len(truth) or not np.array_equal(np.asarray(other["x"]), np.asarray(truth["x"]))


def test_positions_consistent_with_wcs(geometry, truth):
    x, y = geometry.sky_to_pixel(truth["ra"], truth["dec"])
    np.testing.assert_allclose(x, truth["x"], atol=1e-6)
    np.testing.assert_allclose(y, truth["y"], atol=1e-6)
    assert truth["x"].min() >= -0.5 and truth["x"].max() <= geometry.nx - 0.5


def test_galaxy_number_counts_slope(geometry, truth):
    gal = truth[truth["truth_type"] == 1]
    mag = flux_to_mag(gal["flux_r"])
    assert mag.max() <= 27.0 + 1e-9 and mag.min() >= 18.0
    n25, n27 = np.sum(mag < 25), np.sum(mag < 27)
    # N(<m) ~ 10^(0.31 m): the 25-27 ratio is 10^0.62 = 4.2 (pairs flatten it a little).
    assert 3.0 < n27 / n25 < 5.0
    expected = TruthConfig().galaxy_density * geometry.area_arcmin2
    assert abs(n27 / expected - 1.0) < 0.2


def test_stars_on_locus_and_saturated_star_per_patch(geometry, truth):
    stars = truth[truth["is_pointsource"]]
    assert np.all(stars["truth_type"] == 2)
    assert np.all(stars["reff"] == 0) and np.all(np.isnan(stars["disk_reff"]))
    g_r = flux_to_mag(stars["flux_g"]) - flux_to_mag(stars["flux_r"])
    u_g = flux_to_mag(stars["flux_u"]) - flux_to_mag(stars["flux_g"])
    # Locus: u-g grows with g-r.
    assert np.corrcoef(g_r, u_g)[0, 1] > 0.9
    bright = stars[flux_to_mag(stars["flux_r"]) < 16]
    assert set(geometry.inner_patch_of(bright["x"], bright["y"])) == set(geometry.patch_ids())


def test_colour_gradients_and_structure(truth):
    gal = truth[(truth["truth_type"] == 1)]
    composite = gal[(gal["bulge_frac_r"] > 0.05) & (gal["bulge_frac_r"] < 0.95)]
    assert len(composite) > 100
    # Bulges are redder than disks: their flux fraction rises from u to y.
    assert np.all(composite["bulge_frac_y"] > composite["bulge_frac_u"])
    assert np.all(gal["bulge_reff"] < gal["disk_reff"])
    assert np.all((gal["disk_q"] > 0.19) & (gal["disk_q"] <= 1.0))
    # Size-magnitude relation: brighter galaxies are larger.
    mag = flux_to_mag(gal["flux_r"])
    assert np.median(gal["disk_reff"][mag < 22]) > 2 * np.median(gal["disk_reff"][mag > 26])


def test_close_pairs_exist(truth):
    gal = truth[truth["truth_type"] == 1]
    dist, _ = cKDTree(np.c_[gal["x"], gal["y"]]).query(np.c_[gal["x"], gal["y"]], k=2)
    close = np.sum(dist[:, 1] < 2.0 / 0.2)
    assert close > 0.05 * len(gal)


def test_single_component_reff_is_component_reff(truth):
    gal = truth[truth["truth_type"] == 1]
    disk = gal[gal["bulge_frac_r"] == 0]
    assert np.array_equal(np.asarray(disk["reff"]), np.asarray(disk["disk_reff"]))


def _galsim_major_axis_hlr(row, band="r") -> float:
    """Half-light semi-major axis measured on a rendered image, for an independent check."""
    dominant = "bulge" if row["bulge_frac_r"] > 0.5 else "disk"
    q, beta = row[f"{dominant}_q"], row[f"{dominant}_position_angle"] * galsim.degrees
    profile = galaxy_profile(row, band)
    # Stretch the aperture ellipse into a circle, then measure the circular half-light radius.
    circular = profile.rotate(-beta).transform(1.0, 0.0, 0.0, 1.0 / q).rotate(beta)
    scale = row["reff"] / 50.0
    image = circular.drawImage(nx=2000, ny=2000, scale=scale, method="no_pixel")
    return image.calculateHLR(flux=circular.flux)


def test_composite_reff_matches_galsim_measurement(truth):
    gal = truth[(truth["truth_type"] == 1) & (truth["bulge_frac_r"] > 0.2) & (truth["bulge_frac_r"] < 0.8)]
    for row in gal[:4]:
        # calculateHLR bins pixels radially: a bias of up to ~0.5% at 50 pixels per reff.
        assert _galsim_major_axis_hlr(row) == pytest.approx(row["reff"], rel=0.008)


def test_halflight_exact_cases():
    one = np.array([1.0])
    # A single component in its own aperture: exactly its r_e, for both indices.
    for n in (1.0, 4.0):
        r = composite_half_light_radius(
            [one], [n], [one * 2.5], [one * 0.3], [one * 0.7], one * 0.3, one * 0.7
        )
        assert r[0] == pytest.approx(2.5, rel=1e-10)
    # Two identical components with the same shape: the same radius.
    r = composite_half_light_radius(
        [one, one],
        [1.0, 1.0],
        [one, one],
        [one * 0.5, one * 0.5],
        [one * 0.2, one * 0.2],
        one * 0.5,
        one * 0.2,
    )
    assert r[0] == pytest.approx(1.0, rel=1e-10)
    # A round component in a round aperture against the analytic two-component mixture.
    from lsst.galmix.models.sersic_profile import sersic_b
    from scipy.optimize import brentq
    from scipy.special import gammainc

    def enclosed(a):
        return 0.3 * gammainc(8, sersic_b(4) * (a / 0.5) ** 0.25) + 0.7 * gammainc(2, sersic_b(1) * a / 2.0)

    exact = brentq(lambda a: enclosed(a) - 0.5, 0.01, 100, xtol=1e-14)
    r = composite_half_light_radius(
        [one * 0.3, one * 0.7],
        [4.0, 1.0],
        [one * 0.5, one * 2.0],
        [one, one],
        [one * 0, one * 0],
        one,
        one * 0,
    )
    assert r[0] == pytest.approx(exact, rel=1e-10)

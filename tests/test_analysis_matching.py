"""Tests of probabilistic matching and of the matched/consolidated table operations."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.galmix.analysis import (
    angular_separation_arcsec,
    build_matched_table,
    consolidate_models,
    match_probabilistic,
    match_tables,
    resolve_duplicates,
)

RA0, DEC0 = 55.0, -30.0


def _offset(ra, dec, east_arcsec, north_arcsec):
    return ra + east_arcsec / 3600.0 / np.cos(np.deg2rad(dec)), dec + north_arcsec / 3600.0


def test_recovers_identity_with_noise():
    rng = np.random.default_rng(1)
    n = 400
    ra = RA0 + rng.uniform(0, 0.05, n)
    dec = DEC0 + rng.uniform(0, 0.05, n)
    flux = rng.uniform(100, 1e5, (n, 2))
    err = 0.02 * flux + 10
    perm = rng.permutation(n)
    t_ra, t_dec = _offset(ra[perm], dec[perm], rng.normal(0, 0.02, n), rng.normal(0, 0.02, n))
    t_flux = flux[perm] + rng.normal(0, 1, (n, 2)) * err[perm]
    res = match_probabilistic(ra, dec, flux, t_ra, t_dec, np.full(n, 0.02), t_flux, err[perm])
    assert res.n_matched == n
    np.testing.assert_array_equal(perm[res.ref_to_target], np.arange(n))
    np.testing.assert_array_equal(res.target_to_ref[res.ref_to_target], np.arange(n))
    d = angular_separation_arcsec(ra, dec, t_ra[res.ref_to_target], t_dec[res.ref_to_target])
    np.testing.assert_allclose(res.distance, d, rtol=1e-6, atol=1e-9)


def test_brightest_first_and_one_to_one():
    # Two references 0.1" apart, one target between them: the brighter reference takes it.
    ra = np.array([RA0, _offset(RA0, DEC0, 0.1, 0)[0]])
    dec = np.array([DEC0, DEC0])
    flux = np.array([[100.0], [1000.0]])
    t_ra, t_dec = _offset(RA0, DEC0, 0.05, 0)
    res = match_probabilistic(
        ra, dec, flux, np.array([t_ra]), np.array([t_dec]), np.array([np.nan]), np.array([[np.nan]]),
        np.array([[np.nan]]),
    )
    assert list(res.ref_to_target) == [-1, 0]
    assert list(res.target_to_ref) == [1]


def test_flux_chisq_beats_distance():
    # The nearer candidate has a flux far from the reference's; the farther one agrees.
    ra, dec = np.array([RA0]), np.array([DEC0])
    near = _offset(RA0, DEC0, 0.05, 0)
    far = _offset(RA0, DEC0, 0, 0.15)
    t_ra = np.array([near[0], far[0]])
    t_dec = np.array([near[1], far[1]])
    res = match_probabilistic(
        ra, dec, [[1000.0]], t_ra, t_dec, np.full(2, 0.1), np.array([[5000.0], [1010.0]]), np.full((2, 1), 20.0)
    )
    assert res.ref_to_target[0] == 1
    assert res.ref_count[0] == 2
    assert res.ref_n_finite[0] == 3
    np.testing.assert_allclose(res.distance[0], 0.15, rtol=1e-3)


def test_radius_selection_and_nan():
    ra = np.array([RA0, RA0 + 0.01, np.nan])
    dec = np.array([DEC0, DEC0, DEC0])
    t1 = _offset(RA0, DEC0, 0.6, 0)  # outside the default 0.5"
    t2 = _offset(RA0 + 0.01, DEC0, 0.3, 0)
    t_ra, t_dec = np.array([t1[0], t2[0]]), np.array([t1[1], t2[1]])
    args = (np.ones((3, 1)), t_ra, t_dec, np.full(2, 0.1), np.ones((2, 1)), np.ones((2, 1)))
    res = match_probabilistic(ra, dec, *args)
    assert list(res.ref_to_target) == [-1, 1, -1]
    assert not res.ref_candidate[2]
    res = match_probabilistic(ra, dec, *args, radius=0.7)
    assert list(res.ref_to_target) == [0, 1, -1]
    res = match_probabilistic(ra, dec, *args, radius=0.7, target_select=np.array([False, True]))
    assert list(res.ref_to_target) == [-1, 1, -1]


def test_band_count_mismatch_raises():
    with pytest.raises(ValueError, match="bands"):
        match_probabilistic([RA0], [DEC0], [[1.0, 2.0]], [RA0], [DEC0], [0.1], [[1.0]], [[1.0]])


def _patch_table(model, ids, patch, ra, primary, npix):
    t = Table()
    t["objectId"] = np.asarray(ids, dtype=np.int64)
    t["parentObjectId"] = np.zeros(len(ids), dtype=np.int64)
    t["patch"] = np.full(len(ids), patch, dtype=np.int64)
    t["detect_isPrimary"] = np.asarray(primary, dtype=bool)
    t[f"g_{model}Flux"] = np.arange(len(ids), dtype=float) + 10 * patch
    t[f"g_{model}Flux"].unit = "nJy"
    t[f"g_{model}Flux"].description = "flux"
    t[f"{model}_ra"] = np.asarray(ra, dtype=float)
    t[f"{model}_dec"] = np.full(len(ids), DEC0)
    t[f"{model}_n_pix"] = np.asarray(npix, dtype=np.int32)
    t[f"{model}_flag"] = np.zeros(len(ids), dtype=bool)
    return t


def test_consolidate_joins_models_and_keeps_metadata():
    a = [_patch_table("sersic", [3, 1], 0, [RA0, RA0 + 0.01], [1, 1], [10, 10]),
         _patch_table("sersic", [7], 1, [RA0 + 0.02], [1], [10])]
    b = [_patch_table("exp", [1, 3], 0, [RA0 + 0.01, RA0], [1, 1], [10, 10])]  # object 7 missing
    t = consolidate_models({"sersic": a, "exp": b})
    assert list(t["objectId"]) == [1, 3, 7]
    assert list(t["patch"]) == [0, 0, 1]
    assert t.colnames.count("patch") == 1
    assert list(t["g_sersicFlux"]) == [1.0, 0.0, 10.0]
    assert list(t["g_expFlux"][:2]) == [0.0, 1.0]
    assert np.isnan(t["g_expFlux"][2])
    assert list(t["exp_flag"]) == [False, False, True]
    assert str(t["g_expFlux"].unit) == "nJy" and t["g_expFlux"].description == "flux"
    with pytest.raises(ValueError, match="repeat"):
        consolidate_models({"sersic": a + a})


def test_resolve_duplicates_prefers_inner_then_more_pixels():
    dup_ra = _offset(RA0, DEC0, 0.1, 0)[0]
    t = consolidate_models(
        {
            "sersic": [
                _patch_table("sersic", [1, 2], 0, [RA0, RA0 + 0.1], [1, 1], [50, 50]),
                _patch_table("sersic", [11, 12], 1, [dup_ra, RA0 + 0.2], [1, 1], [80, 50]),
            ]
        }
    )
    primary = resolve_duplicates(t, "sersic_ra", "sersic_dec", 0.5, "sersic_n_pix")
    assert dict(zip(t["objectId"], primary)) == {1: False, 2: True, 11: True, 12: True}
    t["detect_isPatchInner"] = t["objectId"] == 1
    primary = resolve_duplicates(t, "sersic_ra", "sersic_dec", 0.5, "sersic_n_pix")
    assert dict(zip(t["objectId"], primary)) == {1: True, 2: True, 11: False, 12: True}
    # Same-patch neighbours are deblended children, not duplicates.
    t["patch"] = 0
    assert resolve_duplicates(t, "sersic_ra", "sersic_dec", 0.5, "sersic_n_pix").all()


def test_build_matched_table():
    ref = Table({"id": np.array([10, 20, 30]), "ra": [1.0, 2.0, 3.0], "is_pointsource": [True, False, False]})
    ref["ra"].unit = "deg"
    target = Table({"objectId": np.array([100, 200]), "g_sersicFlux": [5.0, 6.0]})
    ref_match = Table({"match_candidate": [True, True, False], "match_row": np.array([1, -1, -1]),
                       "match_distance": [0.1, np.nan, np.nan], "match_chisq": [2.0, np.nan, np.nan]})
    target_match = Table({"match_candidate": [True, True], "match_row": np.array([-1, 0])})
    m = build_matched_table(ref, target, ref_match, target_match)
    assert len(m) == 3  # one pair, one lonely reference (id 20), one lonely object (100); id 30 not a candidate
    assert list(m["objectId"]) == [200, -1, 100]
    assert list(m["refcat_id"]) == [10, 20, -1]
    assert list(m["match_hasRef"]) == [True, True, False]
    assert list(m["match_hasObject"]) == [True, False, True]
    assert m["refcat_is_pointsource"][0] and not m["refcat_is_pointsource"][2]
    assert np.isnan(m["g_sersicFlux"][1]) and m["g_sersicFlux"][0] == 6.0
    assert str(m["refcat_ra"].unit) == "deg"
    with pytest.raises(ValueError, match="aligned"):
        build_matched_table(ref, target, ref_match[:2], target_match)


def test_match_tables_roundtrip():
    res = match_probabilistic([RA0], [DEC0], [[1.0]], [RA0, RA0 + 1], [DEC0, DEC0], [0.1, 0.1],
                              [[1.0], [1.0]], [[1.0], [1.0]])
    ref_t, tgt_t = match_tables(res)
    assert list(ref_t["match_row"]) == [0]
    assert list(tgt_t["match_row"]) == [0, -1]
    assert str(ref_t["match_distance"].unit) == "arcsec"


def test_in_bounding_box_wraps_ra():
    from lsst.galmix.analysis import in_bounding_box

    inside = in_bounding_box(
        np.array([359.95, 0.05, 0.2, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]),
        np.array([359.9, 0.1, np.nan]), np.array([-0.1, 0.1, 0.0]),
    )
    assert list(inside) == [True, True, False, False]
    assert not in_bounding_box([1.0], [1.0], [np.nan], [np.nan]).any()
    assert in_bounding_box([0.1 + 0.4 / 3600], [0.0], [0.0, 0.1], [0.0, 0.0], margin=0.5)[0]
    assert not in_bounding_box([0.1 + 0.6 / 3600], [0.0], [0.0, 0.1], [0.0, 0.0], margin=0.5)[0]


def test_in_primary_area():
    from lsst.galmix.analysis import in_primary_area

    # Primary objects span RA 10.00-10.01; non-primary objects at 10.02 (outside the box) and at
    # 10.008 (inside it: a border region not owned by this patch).
    obj_ra = np.array([10.0, 10.01, 10.02, 10.005, 10.008])
    obj_dec = np.array([0.0, 0.01, 0.005, 0.005, 0.001])
    primary = np.array([True, True, False, True, False])
    ra = np.array([10.005 + 0.5 / 3600, 10.008 + 0.5 / 3600, 10.0195, 10.002, 10.5])
    dec = np.array([0.005, 0.001, 0.0, 0.002, 0.005])
    # near a primary; near the non-primary inside the box; outside the box; undetected inside; far away.
    inside = in_primary_area(ra, dec, obj_ra, obj_dec, primary, radius=2.0)
    assert list(inside) == [True, False, False, True, False]
    # A non-primary duplicate next to a primary copy does not exclude the reference.
    inside = in_primary_area([10.005], [0.005], np.r_[obj_ra, 10.005], np.r_[obj_dec, 0.005],
                             np.r_[primary, False], radius=2.0)
    assert inside[0]

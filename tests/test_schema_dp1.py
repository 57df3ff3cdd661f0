"""The object table's Sersic and identity columns are those of Rubin's DP1 Object table (lsst-sdm-schemas)."""

import importlib.resources

import astropy.units as u
import numpy as np
import pytest
import yaml
from astropy.table import Table
from lsst.galmix.analysis.catalogs import add_identity_columns, reference_band
from lsst.galmix.schema import (
    empty_source_table,
    flag_column,
    source_columns,
    summary_flag_column,
    tract_columns,
)

BANDS = ["u", "g", "r", "i", "z", "y"]

# Felis datatypes -> numpy (kind, item size; strings: kind only).
DATATYPES = {"float": ("f", 4), "double": ("f", 8), "int": ("i", 4), "long": ("i", 8), "boolean": ("b", 1),
             "char": ("U", None)}

SERSIC = ["sersic_x", "sersic_y", "sersic_ra", "sersic_dec", "sersic_reff_x", "sersic_reff_y", "sersic_rho",
          "sersic_index", "sersic_chisq_reduced", "sersic_n_iter", "sersic_n_eval_jac", "sersic_no_data_flag",
          "sersic_unknown_flag"]
SERSIC += [c + "Err" for c in SERSIC[:8]]
SERSIC += [f"{b}_sersicFlux{e}" for b in BANDS for e in ("", "Err")]
IDENTITY = ["objectId", "coord_ra", "coord_dec", "tract", "patch", "refBand", "refExtendedness"]
PSF = [f"{b}_psfFlux{e}" for b in BANDS for e in ("", "Err")]


@pytest.fixture(scope="module")
def dp1_object():
    text = importlib.resources.files("lsst.sdm.schemas").joinpath("dp1.yaml").read_text()
    table = next(t for t in yaml.safe_load(text)["tables"] if t["name"] == "Object")
    return {c["name"]: c for c in table["columns"]}


def _check(col, ref):
    assert col.name == ref["name"]
    kind, size = DATATYPES[ref["datatype"]]
    dtype = np.dtype(col.dtype)
    assert dtype.kind == kind and (size is None or dtype.itemsize == size), (col.name, dtype, ref["datatype"])
    unit = ref.get("ivoa:unit") or ref.get("fits:tunit")
    if unit is None:
        assert col.unit is None, (col.name, col.unit)
    else:
        assert col.unit is not None and u.Unit(col.unit) == u.Unit(unit), (col.name, col.unit, unit)


def test_sersic_columns_follow_dp1(dp1_object):
    cols = {c.name: c for c in source_columns("sersic", BANDS)}
    for name in SERSIC:
        assert name in dp1_object, name  # the list above is DP1's
        _check(cols[name], dp1_object[name])
    assert flag_column("sersic", "exception") == "sersic_unknown_flag"
    assert flag_column("sersic", "no_data") == "sersic_no_data_flag"


def test_identity_and_psf_columns_follow_dp1(dp1_object):
    cols = {c.name: c for c in tract_columns(BANDS)}
    for name in IDENTITY:
        _check(cols[name], dp1_object[name])
    assert dp1_object["refBand"].get("length") == 1
    point = {c.name: c for c in source_columns("point", BANDS)}
    for name in PSF:
        _check(point[name], dp1_object[name])


def test_identity_columns_of_a_consolidated_table(dp1_object):
    sersic = empty_source_table("sersic", BANDS, 3)
    point = empty_source_table("point", BANDS, 3)
    table = Table(sersic)
    for name in point.colnames:
        if name not in table.colnames:
            table[name] = point[name]
    table["objectId"] = [1, 2, 3]
    table["sersic_ra"], table["sersic_dec"] = [10.0, 10.1, np.nan], [-5.0, -5.1, np.nan]
    table["point_ra"], table["point_dec"] = [10.0, 10.1, 10.2], [-5.0, -5.1, -5.2]
    table["isPrimary"] = True
    # Object 1: bright in i (the first band of the priority list) and extended; 2: faint in i, seen in r,
    # point-like; 3: no data.
    for b in BANDS:
        table[f"{b}_sersicFlux"] = [1000.0, 100.0 if b == "r" else 1.0, np.nan]
        table[f"{b}_sersicFluxErr"] = [10.0, 10.0, np.nan]
        table[f"{b}_psfFlux"] = [500.0, 100.0 if b == "r" else 1.0, np.nan]
    out = add_identity_columns(table, ["sersic", "point"], tract=9813)
    assert out.colnames[:7] == IDENTITY
    for name in IDENTITY:
        _check(out[name], dp1_object[name])
    assert list(out["coord_ra"]) == [10.0, 10.1, 10.2] and (out["tract"] == 9813).all()
    assert list(out["refBand"]) == ["i", "r", "i"]
    assert list(out["refExtendedness"][:2]) == [1.0, 0.0] and np.isnan(out["refExtendedness"][2])
    # No band reaches the S/N: the highest S/N, ties to the first band of the priority list.
    assert list(reference_band(out, "sersic", min_snr=1e9)) == ["i", "r", "i"]
    assert summary_flag_column("sersic") == "sersic_flag"

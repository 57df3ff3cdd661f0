"""`lsst.galmix.data.tables.for_put`: the parquet written from it is byte-identical to the stock path's."""

from __future__ import annotations

import io

import astropy.units as u
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.table import Column, MaskedColumn, QTable, Table
from lsst.daf.butler.formatters.parquet import arrow_to_astropy, astropy_to_arrow
from lsst.galmix.data.tables import _FrozenColumnsTable, for_put


def _wide_table(n_columns: int = 120, n_rows: int = 17) -> Table:
    rng = np.random.default_rng(3)
    t = Table()
    t["id"] = Column(np.arange(n_rows, dtype=np.int64), description="object id")
    for k in range(n_columns):
        values = rng.normal(size=n_rows).astype(np.float32 if k % 3 else np.float64)
        values[k % n_rows] = np.nan
        t[f"col{k}_instFlux"] = Column(values, unit=u.nJy if k % 2 else None, description=f"column {k}")
    t["flag"] = Column(rng.random(n_rows) > 0.5, description="a flag")
    t["band"] = Column(np.array(["u", "gg", "rrr"] * 6)[:n_rows], description="strings")
    t["vec"] = Column(rng.normal(size=(n_rows, 3)), unit="pix", description="multidimensional")
    t["masked"] = MaskedColumn(np.arange(n_rows, dtype=np.int32), mask=np.arange(n_rows) % 4 == 0)
    t.meta["galmix_version"] = "test"
    t.meta["nested"] = {"a": [1, 2], "b": "x"}
    return t


def _parquet_bytes(table: Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(astropy_to_arrow(table), buf)  # as the daf_butler ParquetFormatter writes
    return buf.getvalue()


def test_for_put_writes_identical_parquet():
    t = _wide_table()
    view = for_put(t)
    assert isinstance(view, _FrozenColumnsTable)
    assert _parquet_bytes(view) == _parquet_bytes(t)


def test_for_put_reads_back_identical():
    t = _wide_table()
    back = arrow_to_astropy(astropy_to_arrow(for_put(t)))
    ref = arrow_to_astropy(astropy_to_arrow(t))
    assert back.colnames == t.colnames == ref.colnames
    for name in t.colnames:
        assert back[name].dtype == ref[name].dtype, name
        assert back[name].unit == ref[name].unit, name
        assert back[name].description == ref[name].description, name
        assert np.array_equal(np.asarray(back[name]), np.asarray(ref[name]), equal_nan=back[name].dtype.kind == "f")
    assert back.meta == ref.meta


def test_for_put_shares_data_and_meta():
    t = _wide_table(5)
    view = for_put(t)
    assert view.meta is t.meta  # keys the Butler adds on put reach the caller's table
    assert np.shares_memory(np.asarray(view["col1_instFlux"]), np.asarray(t["col1_instFlux"]))
    assert view.dtype == t.dtype


@pytest.mark.parametrize("obj", [QTable({"a": [1.0, 2.0] * u.m}), {"a": 1}, None])
def test_for_put_leaves_other_types(obj):
    assert for_put(obj) is obj


def test_for_put_computes_dtype_once(monkeypatch):
    calls = []
    original = Table.dtype.fget

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(Table, "dtype", property(counting))
    t = _wide_table(30)
    astropy_to_arrow(t)
    stock = len(calls)
    calls.clear()
    astropy_to_arrow(for_put(t))
    assert len(calls) == 1 < stock

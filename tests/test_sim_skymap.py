"""Skymap geometry: patches tile the tract, overlap, cells align, WCS and regions are consistent."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.galmix.data import SIZES, SimSize, TractGeometry
from lsst.sphgeom import LonLat, UnitVector3d


@pytest.mark.parametrize("size", list(SIZES))
def test_inner_boxes_tile_and_outer_boxes_overlap(size):
    geometry = TractGeometry(SIZES[size])
    cover = np.zeros((geometry.ny, geometry.nx), dtype=int)
    b = geometry.size.patch_border
    for patch in geometry.patch_ids():
        inner, outer = geometry.patch_inner_bbox(patch), geometry.patch_outer_bbox(patch)
        cover[inner.y.start : inner.y.stop, inner.x.start : inner.x.stop] += 1
        assert outer.x.start == inner.x.start - b and outer.y.stop == inner.y.stop + b
        assert geometry.bbox.contains(outer)
        definition = geometry.patch_definition(patch)
        assert definition.outer_bbox == outer and definition.inner_bbox == inner
        # Patch cell grids sit on the tract-wide grid.
        assert outer.x.start % geometry.size.cell_size == 0 and outer.y.start % geometry.size.cell_size == 0
    assert np.all(cover[b:-b, b:-b] == 1) and cover.sum() == (geometry.nx - 2 * b) * (geometry.ny - 2 * b)


def test_inner_patch_of_matches_boxes():
    geometry = TractGeometry(SIZES["ci"])
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.5, geometry.nx - 0.5, 2000), rng.uniform(-0.5, geometry.ny - 0.5, 2000)
    patch = geometry.inner_patch_of(x, y)
    for xi, yi, p in zip(x, y, patch):
        owners = [
            q for q in geometry.patch_ids() if geometry.patch_inner_bbox(q).contains(x=round(xi), y=round(yi))
        ]
        assert owners == ([p] if p >= 0 else [])


def test_wcs_scale_projection_and_regions():
    geometry = TractGeometry(SIZES["ci"])
    ra, dec = geometry.pixel_to_sky(np.array([100.0, 101.0]), np.array([100.0, 100.0]))
    sep = np.hypot((ra[1] - ra[0]) * np.cos(np.radians(dec[0])), dec[1] - dec[0]) * 3600
    assert sep == pytest.approx(0.2, rel=1e-3)
    sky = geometry.sky_projection.pixel_to_sky(x=123.4, y=456.7)
    ra2, dec2 = geometry.pixel_to_sky(123.4, 456.7)
    assert sky.ra.deg == pytest.approx(float(ra2), abs=1e-9) and sky.dec.deg == pytest.approx(
        float(dec2), abs=1e-9
    )
    for patch in geometry.patch_ids():
        inner = geometry.patch_inner_bbox(patch)
        cra, cdec = geometry.pixel_to_sky(
            (inner.x.start + inner.x.stop) / 2, (inner.y.start + inner.y.stop) / 2
        )
        centre = UnitVector3d(LonLat.fromDegrees(float(cra), float(cdec)))
        assert geometry.patch_region(patch).contains(centre)
        assert geometry.region.contains(centre)


def test_cells_and_bad_sizes():
    geometry = TractGeometry(SIZES["ci"])
    i, j = geometry.cell_of(np.array([0.0, 49.4, 49.6, 699.0]), np.array([0.0, 0.0, 120.0, 699.0]))
    assert list(i) == [0, 0, 2, 13] and list(j) == [0, 0, 1, 13]
    assert geometry.cell_center(0, 1) == (74.5, 24.5)
    with pytest.raises(ValueError, match="multiples of the cell size"):
        SimSize("bad", 1, 1, patch_inner=110, patch_border=50, cell_size=50)
    with pytest.raises(ValueError, match="not in tract"):
        geometry.patch_index(4)

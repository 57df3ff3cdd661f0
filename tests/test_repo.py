"""The simulated Butler repository: contents, PSFs, photometry, determinism and input errors."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.galmix.data import SIZES, TractGeometry
from lsst.galmix.sim import make_repo
from lsst.galmix.sim.cli import main as cli_main
from lsst.galmix.sim.observing import SATURATION_NJY, PsfField

SKY = {"skymap": "galmix_sim", "tract": 0}


@pytest.fixture(scope="module")
def butler(ci_repo):
    return Butler.from_config(ci_repo, collections="galmix/sim")


@pytest.fixture(scope="module")
def truth(butler):
    return butler.get("truth_summary", **SKY)


def test_summary_and_records(ci_repo_summary, butler):
    assert ci_repo_summary.n_coadds == 24 and ci_repo_summary.bands == list("ugrizy")
    assert ci_repo_summary.bytes_on_disk > 0
    assert "deep_coadd_cell: 24 coadds" in ci_repo_summary.describe()
    patches = butler.query_dimension_records("patch", where="skymap = 'galmix_sim'")
    assert sorted((p.id, p.cell_x, p.cell_y) for p in patches) == [(0, 0, 0), (1, 1, 0), (2, 0, 1), (3, 1, 1)]
    filters = butler.query_dimension_records("physical_filter", instrument="GalmixSim")
    assert sorted((f.name, f.band) for f in filters) == [(f"sim_{b}", b) for b in sorted("ugrizy")]


def test_everything_readable(butler, truth):
    refs = butler.query_datasets("deep_coadd_cell", collections="galmix/sim", where="skymap = 'galmix_sim'")
    assert len(refs) == 24
    geometry = TractGeometry(SIZES["ci"])
    for ref in refs:
        coadd = butler.get(ref)
        patch = ref.dataId["patch"]
        assert coadd.band == ref.dataId["band"]
        assert coadd.unit == u.nJy and coadd.variance.unit == u.nJy**2
        assert coadd.bbox == geometry.patch_outer_bbox(patch)
        assert coadd.patch.inner_bbox == geometry.patch_inner_bbox(patch)
        assert coadd.tract == 0 and coadd.skymap == "galmix_sim"
        assert {"BAD", "SAT", "EDGE", "NO_DATA", "DETECTED"} <= set(coadd.mask.schema.names)
    assert len(truth) > 300
    assert truth["flux_r"].unit == u.nJy


def test_overlaps_identical_and_masks(butler):
    a = butler.get("deep_coadd_cell", **SKY, patch=0, band="i")
    b = butler.get("deep_coadd_cell", **SKY, patch=1, band="i")
    overlap = a.bbox.intersection(b.bbox)
    assert overlap is not None and overlap.x.size == 100
    np.testing.assert_array_equal(a.image[overlap].array, b.image[overlap].array)
    np.testing.assert_array_equal(a.psf[overlap].bounds.bbox, b.psf[overlap].bounds.bbox)
    no_data = a.mask.get("NO_DATA")
    assert no_data.any() and np.all(np.isnan(a.image.array[no_data]))
    assert not np.isnan(a.image.array[~no_data]).any()
    for coadd in (a, b):
        assert coadd.mask.get("SAT").any()
        assert np.all(coadd.image.array[coadd.mask.get("SAT")] == np.float32(SATURATION_NJY))
        edge = coadd.mask.get("EDGE")
        assert edge[0].all() and edge[:, -1].all() and not edge[200, 200]
        detected = coadd.mask.get("DETECTED")
        assert 0.01 < detected.mean() < 0.5
    assert any(
        butler.get("deep_coadd_cell", **SKY, patch=p, band="r").mask.get("BAD").any() for p in range(4)
    )


def test_noise_matches_variance(butler):
    coadd = butler.get("deep_coadd_cell", **SKY, patch=3, band="g")
    usable = ~(
        coadd.mask.get("DETECTED") | coadd.mask.get("BAD") | coadd.mask.get("SAT") | coadd.mask.get("NO_DATA")
    )
    chi = coadd.image.array[usable] / np.sqrt(coadd.variance.array[usable])
    assert abs(np.mean(chi)) < 0.1
    assert np.std(chi) == pytest.approx(1.0, abs=0.05)


def test_stored_psf_is_the_rendered_psf(butler):
    geometry = TractGeometry(SIZES["ci"])
    for band, patch in (("u", 0), ("r", 3), ("y", 1)):
        coadd = butler.get("deep_coadd_cell", **SKY, patch=patch, band=band)
        field = PsfField(geometry, band)
        for x, y in (
            (coadd.bbox.x.start + 10, coadd.bbox.y.start + 10),
            (coadd.bbox.x.stop - 3, coadd.bbox.y.start + 177),
        ):
            i, j = geometry.cell_of(x, y)
            cx, cy = geometry.cell_center(int(i), int(j))
            rendered = field.profile(cx, cy).drawImage(nx=33, ny=33, scale=0.2).array
            stored = coadd.psf.compute_kernel_image(x=x, y=y)
            assert stored.bbox.x.start == -16 and stored.array.shape == (33, 33)
            np.testing.assert_allclose(stored.array, rendered, rtol=0, atol=1e-12)
    # The PSF varies across the tract: two far-apart cells differ.
    coadd = butler.get("deep_coadd_cell", **SKY, patch=0, band="r")
    near = coadd.psf.compute_kernel_image(x=10, y=10).array
    far = coadd.psf.compute_kernel_image(x=390, y=390).array
    assert np.abs(near - far).max() > 1e-3 * near.max()


def test_star_aperture_flux_matches_truth(butler, truth):
    geometry = TractGeometry(SIZES["ci"])
    others = np.c_[truth["x"], truth["y"]]
    checked = 0
    for star in truth[truth["is_pointsource"]]:
        if star["flux_r"] > 2e5 or star["flux_r"] < 2e3:
            continue  # saturated, or too faint for a sharp test
        patch = int(geometry.inner_patch_of(star["x"], star["y"]))
        distance = np.hypot(*(others - [star["x"], star["y"]]).T)
        if patch < 0 or np.sort(distance)[1] < 25:
            continue
        coadd = butler.get("deep_coadd_cell", **SKY, patch=patch, band="r")
        ix, iy = round(star["x"]), round(star["y"])
        x0, y0 = coadd.bbox.x.start, coadd.bbox.y.start
        cut = np.s_[iy - y0 - 12 : iy - y0 + 13, ix - x0 - 12 : ix - x0 + 13]
        if np.any(coadd.mask.get("BAD")[cut] | coadd.mask.get("NO_DATA")[cut]):
            continue
        yy, xx = np.mgrid[-12:13, -12:13]
        aperture = np.hypot(xx + ix - star["x"], yy + iy - star["y"]) < 10
        flux = coadd.image.array[cut][aperture].sum()
        sigma = np.sqrt(coadd.variance.array[cut][aperture].sum())
        kernel = coadd.psf.compute_kernel_image(x=star["x"], y=star["y"]).array
        ky, kx = np.mgrid[-16:17, -16:17]
        fraction = kernel[np.hypot(kx, ky) < 10].sum()
        assert abs(flux / fraction - star["flux_r"]) < 4 * sigma / fraction + 0.01 * star["flux_r"]
        checked += 1
    assert checked >= 3


def test_second_repository_side_by_side(tmp_path, ci_repo):
    summary = make_repo(str(tmp_path / "other"), size="ci", bands="gr", seed=1)
    same_seed = Butler.from_config(summary.root, collections="galmix/sim")
    first = Butler.from_config(ci_repo, collections="galmix/sim")
    assert summary.n_coadds == 8
    assert len(same_seed.query_datasets("deep_coadd_cell", where="skymap = 'galmix_sim'")) == 8
    # Same seed: identical truth and pixels, whatever other bands were rendered.
    np.testing.assert_array_equal(
        same_seed.get("truth_summary", **SKY)["flux_z"], first.get("truth_summary", **SKY)["flux_z"]
    )
    a = same_seed.get("deep_coadd_cell", **SKY, patch=2, band="r").image.array
    b = first.get("deep_coadd_cell", **SKY, patch=2, band="r").image.array
    np.testing.assert_array_equal(a, b)
    other = make_repo(str(tmp_path / "seed2"), size="ci", bands="r", seed=2)
    c = (
        Butler.from_config(other.root, collections="galmix/sim")
        .get("deep_coadd_cell", **SKY, patch=2, band="r")
        .image.array
    )
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(c))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bands": "grq"}, ValueError, "Unknown band"),
        ({"bands": "gg"}, ValueError, "repeats"),
        ({"size": "huge"}, ValueError, "Unknown size 'huge'"),
    ],
)
def test_bad_inputs_are_clear_errors(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_repo(str(tmp_path / "repo"), **kwargs)
    assert not (tmp_path / "repo").exists()


def test_existing_repository_is_an_error(ci_repo, tmp_path, capsys):
    with pytest.raises(FileExistsError, match="already exists"):
        make_repo(ci_repo, bands="r")
    assert cli_main([ci_repo, "--bands", "r"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "x"), "--bands", "uv"]) == 2
    assert "Unknown band(s) 'v'" in capsys.readouterr().err


def test_command_line_builds_and_prints(tmp_path, capsys):
    assert cli_main([str(tmp_path / "cli"), "--bands", "i", "--seed", "4"]) == 0
    captured = capsys.readouterr()
    assert "deep_coadd_cell: 4 coadds, bands i" in captured.out
    assert "band i (1/1)" in captured.err
    butler = Butler.from_config(str(tmp_path / "cli"), collections="galmix/sim")
    assert butler.get("deep_coadd_cell", **SKY, patch=3, band="i").band == "i"


def test_registry_url_is_used(tmp_path):
    from lsst.galmix.data import create_butler_repo, register_instrument

    database = tmp_path / "elsewhere" / "registry.sqlite3"
    database.parent.mkdir()
    butler = create_butler_repo(str(tmp_path / "repo"), registry=f"sqlite:///{database}")
    register_instrument(butler, "gr")
    assert database.exists() and not (tmp_path / "repo" / "gen3.sqlite3").exists()
    reopened = Butler.from_config(str(tmp_path / "repo"))
    assert {r.band for r in reopened.query_dimension_records("physical_filter")} == {"g", "r"}
    with pytest.raises(FileExistsError):
        create_butler_repo(str(tmp_path / "repo"))


def test_coadds_uncompressed_and_lossless(butler, tmp_path):
    """The simulated coadds are stored uncompressed (`UncompressedFitsFormatter`) and read back exactly
    the pixels and kernels that the default (compressed, lossless) write reads back."""
    from astropy.io import fits
    from lsst.images.cells import CellCoadd
    from lsst.images.serialization import read_archive, write_archive

    ref = butler.find_dataset("deep_coadd_cell", **SKY, patch=2, band="z")
    with fits.open(butler.getURI(ref).ospath) as hdus:
        images = [h for h in hdus if isinstance(h, fits.ImageHDU | fits.CompImageHDU)]
        assert {h.name for h in images} >= {"IMAGE", "MASK", "VARIANCE", "PSF"}
        assert not any(isinstance(h, fits.CompImageHDU) for h in images)
    coadd = butler.get(ref)
    write_archive(coadd, tmp_path / "compressed.fits")  # the lsst-images default: GZIP_2 tiles
    with fits.open(tmp_path / "compressed.fits") as hdus:
        assert isinstance(hdus["IMAGE"], fits.CompImageHDU)
    again = read_archive(tmp_path / "compressed.fits", CellCoadd)
    for plane in ("image", "mask", "variance"):
        a, b = getattr(coadd, plane).array, getattr(again, plane).array
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), plane
    for x, y in ((10, 10), (200, 330), (390, 390)):
        x0, y0 = coadd.bbox.x.start + x, coadd.bbox.y.start + y
        k1 = coadd.psf.compute_kernel_image(x=x0, y=y0).array
        k2 = again.psf.compute_kernel_image(x=x0, y=y0).array
        assert k1.tobytes() == k2.tobytes()
    assert butler.get("deep_coadd_cell.psf", dataId=ref.dataId).compute_kernel_image(x=x0, y=y0).array.tobytes() \
        == k1.tobytes()

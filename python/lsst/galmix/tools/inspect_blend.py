"""Blend inspector: rebuild a blend's model from the output tables and draw data, model and residuals.

Command line: ``galmix-inspect REPO --collections C --object ID [--model sersic] [--output blend.png]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from astropy.visualization import make_lupton_rgb
from matplotlib.figure import Figure

from lsst.daf.butler import Butler, ButlerUserError
from lsst.daf.butler.registry import RegistryError

from ..fitting import rebuild
from ..messages import exception_line
from ..models.definitions import ModelDef, get_model
from ..schema import SOURCE_FLAGS, flag_column, param_column

__all__ = ["inspect_blend", "main", "render_objects"]

RGB_BANDS = ("i", "r", "g")
"""Bands shown as red, green, blue."""


def render_objects(
    model: ModelDef,
    rows: Table,
    band: str,
    psf_table: Table | None,
    shape: tuple[int, int],
    origin: tuple[int, int],
) -> np.ndarray:
    """Sum of the PSF-convolved models of ``rows`` in one band.

    Rows with non-finite parameters or fluxes, or without a PSF, add nothing.

    Parameters
    ----------
    model : `ModelDef`
        Model of the columns.
    rows : `astropy.table.Table`
        Fitted objects.
    band : `str`
        Band.
    psf_table : `astropy.table.Table` or `None`
        ``galmix_psf_fits`` of the band.
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)`` of the image.
    origin : `tuple` [`int`, `int`]
        Tract ``(x, y)`` of pixel ``[0, 0]``.

    Returns
    -------
    image : `numpy.ndarray`
        Model image (nJy per pixel).
    """
    if psf_table is None:
        return np.zeros(shape)
    return rebuild.model_image(rows, model, band, psf_table, shape, origin, rows=range(len(rows)))


def _find_object(butler: Butler, collections: Sequence[str], object_id: int, model: str):
    """The tract table holding an object, its row and the data ID of its dataset."""
    for ref in butler.query_datasets("objectTable_tract_galmix", collections=collections, explain=False):
        table = butler.get(ref)
        hit = np.flatnonzero(np.asarray(table["objectId"]) == object_id)
        if len(hit):
            if param_column(model, "x") not in table.colnames:
                raise LookupError(f"objectTable_tract_galmix {ref.dataId} has no columns of model {model!r}")
            return table, int(hit[0]), ref.dataId
    raise LookupError(f"Object {object_id} is not in any objectTable_tract_galmix of {list(collections)}")


def inspect_blend(
    butler: Butler,
    collections: Sequence[str],
    object_id: int,
    model_name: str = "sersic",
    margin: int = 12,
    truth_name: str = "truth_summary",
    coadd_name: str = "deep_coadd_cell",
) -> Figure:
    """Draw an object's blend: data, model and residual RGB images and per-band chi maps.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler of the repository.
    collections : sequence of `str`
        Collections with the pipeline outputs and their inputs.
    object_id : `int`
        Any child of the blend (or an isolated object).
    model_name : `str`
        Model whose fit is shown.
    margin : `int`
        Pixels around the blend's objects.
    truth_name : `str`
        Reference catalogue whose objects are marked (skipped if absent).
    coadd_name : `str`
        Coadd dataset type.

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    """
    model = get_model(model_name)
    m = model.name
    table, index, tract_id = _find_object(butler, collections, object_id, m)
    row = table[index]
    patch = int(row["patch"])
    parent = int(row["parentObjectId"])
    same_patch = np.asarray(table["patch"]) == patch
    if parent != 0:
        members = table[same_patch & (np.asarray(table["parentObjectId"]) == parent)]
    else:
        members = table[index : index + 1]
    x_col, y_col, reff_col = param_column(m, "x"), param_column(m, "y"), param_column(m, "reffPix")
    xs, ys = np.asarray(members[x_col], float), np.asarray(members[y_col], float)
    size = np.nan_to_num(np.asarray(members[reff_col], float), nan=2.0) if reff_col in \
        members.colnames else np.full(len(members), 2.0)
    pad = margin + 3 * np.clip(size, 1, 30)
    x0, x1 = int(np.floor(np.nanmin(xs - pad))), int(np.ceil(np.nanmax(xs + pad)))
    y0, y1 = int(np.floor(np.nanmin(ys - pad))), int(np.ceil(np.nanmax(ys + pad)))

    data_id = dict(tract_id.required) | {"patch": patch}
    bands = sorted(
        {ref.dataId["band"] for ref in butler.query_datasets(coadd_name, collections=collections,
                                                               data_id=data_id, explain=False)},
        key="ugrizy".find,
    )
    images, models, chis = {}, {}, {}
    # Neighbours whose light reaches the box are modelled too, so residuals show only this fit's errors.
    tx, ty = np.asarray(table[x_col], float), np.asarray(table[y_col], float)
    near = same_patch & (tx > x0 - 30) & (tx < x1 + 30) & (ty > y0 - 30) & (ty < y1 + 30)
    neighbours = table[near]
    for band in bands:
        coadd = butler.get(coadd_name, data_id | {"band": band}, collections=collections)
        bx0, by0 = coadd.bbox.x.start, coadd.bbox.y.start
        cx0, cx1 = max(x0, bx0), min(x1, coadd.bbox.x.stop)
        cy0, cy1 = max(y0, by0), min(y1, coadd.bbox.y.stop)
        sl = (slice(cy0 - by0, cy1 - by0), slice(cx0 - bx0, cx1 - bx0))
        img = np.asarray(coadd.image.array[sl], float)
        var = np.asarray(coadd.variance.array[sl], float)
        try:
            psf_table = butler.get("galmix_psf_fits", data_id | {"band": band}, collections=collections)
        except LookupError:
            psf_table = None
        mod = render_objects(model, neighbours, band, psf_table, img.shape, (cx0, cy0))
        images[band], models[band] = img, mod
        with np.errstate(invalid="ignore", divide="ignore"):
            chis[band] = (img - mod) / np.sqrt(var)
    extent = (cx0 - 0.5, cx1 - 0.5, cy0 - 0.5, cy1 - 0.5)

    truth = None
    try:
        truth = butler.get(truth_name, tract_id, collections=collections)
    except LookupError:
        pass

    rgb_bands = [b for b in RGB_BANDS if b in images] or bands[:1]
    rgb_bands = (rgb_bands * 3)[:3]
    # An asinh stretch whose linear range is a few noise sigmas: faint wings and noise both visible.
    noise = float(np.nanmedian([np.nanmedian(np.abs(images[b] - models[b])) for b in rgb_bands]))
    stretch = max(5 * 1.4826 * noise, 1e-6)

    def rgb(planes: dict[str, np.ndarray]) -> np.ndarray:
        r, g, b = (np.nan_to_num(planes[band]) for band in rgb_bands)
        return make_lupton_rgb(r, g, b, stretch=stretch, Q=8, minimum=0.0)

    residual = {b: images[b] - models[b] for b in images}
    n_chi_rows = int(np.ceil(len(bands) / 3))
    fig = Figure(figsize=(12, 4 * (1 + n_chi_rows)), layout="constrained")
    axes = fig.subplots(1 + n_chi_rows, 3, squeeze=False)
    for ax, (title, planes) in zip(axes[0], (("data", images), ("model", models), ("residual", residual))):
        ax.imshow(rgb(planes), origin="lower", extent=extent)
        ax.set_title(f"{title} ({''.join(rgb_bands)} as RGB)")
    for k, band in enumerate(bands):
        ax = axes[1 + k // 3][k % 3]
        im = ax.imshow(chis[band], origin="lower", extent=extent, cmap="RdBu_r", vmin=-5, vmax=5)
        ax.set_title(f"{band}: (data - model) / sigma")
        fig.colorbar(im, ax=ax, shrink=0.8)
    for k in range(len(bands), 3 * n_chi_rows):
        axes[1 + k // 3][k % 3].set_visible(False)
    for ax in [a for a in axes.ravel() if a.get_visible()]:
        ax.plot(neighbours[x_col], neighbours[y_col], "o", mfc="none", mec="lime", ms=9,
                label=f"{m} fit")
        ax.plot(members[x_col], members[y_col], "o", mfc="none", mec="yellow", ms=12, mew=2,
                label="blend members")
        if truth is not None and "x" in truth.colnames:
            tx_, ty_ = np.asarray(truth["x"], float), np.asarray(truth["y"], float)
            sel = (tx_ >= cx0) & (tx_ < cx1) & (ty_ >= cy0) & (ty_ < cy1)
            ax.plot(tx_[sel], ty_[sel], "x", color="magenta", ms=8, label="truth")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    axes[0][0].legend(fontsize=7, loc="upper right")
    for _, r in enumerate(members):
        axes[0][0].annotate(str(r["objectId"]), (r[x_col], r[y_col]), color="white", fontsize=7,
                            xytext=(6, 6), textcoords="offset points")
    flag_cols = {flag_column(m, f.name): f.name for f in SOURCE_FLAGS
                 if flag_column(m, f.name) in members.colnames}
    flags = sorted({name for c, name in flag_cols.items() for r in members if r[c]})
    fig.suptitle(
        f"object {object_id}: blend {parent} with {len(members)} member(s), patch {patch}, model {m}"
        f"\nflags: {', '.join(flags) or 'none'}",
        fontsize=10,
    )
    return fig


_USER_ERRORS = (LookupError, OSError, ValueError, RegistryError, ButlerUserError)
"""Errors a wrong argument causes (missing repository, collection, object or model; unwritable output)."""


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``galmix-inspect``); returns 1 with a one-line message on a user error."""
    parser = argparse.ArgumentParser(description="Draw the data, model and residuals of one galmix blend.")
    parser.add_argument("repo", help="Butler repository")
    parser.add_argument("--collections", required=True, nargs="+", help="Collections with the outputs")
    parser.add_argument("--object", required=True, type=int, dest="object_id", help="objectId")
    parser.add_argument("--model", default="sersic", help="Model whose fit is shown")
    parser.add_argument("--output", default=None, help="PNG file (default: blend_<object>_<model>.png)")
    args = parser.parse_args(argv)
    output = args.output or f"blend_{args.object_id}_{args.model}.png"
    # A user's mistake (no repository, no such collection or object, an output that cannot be written)
    # is one line on stderr and exit status 1, not a traceback.
    try:
        butler = Butler.from_config(args.repo)
        fig = inspect_blend(butler, args.collections, args.object_id, args.model)
        fig.savefig(output, dpi=100)
    except _USER_ERRORS as exc:
        print(f"galmix-inspect: error: {exception_line(exc, with_type=False)}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

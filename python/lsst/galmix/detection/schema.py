"""Columns of ``galmix_objects``: declared once here, as in doc/conventions.rst."""

from __future__ import annotations

__all__ = ("FLAGS", "OBJECT_COLUMNS", "OBJECT_ID_STRIDE", "object_columns")

OBJECT_ID_STRIDE = 10_000_000
"""``objectId = patch * OBJECT_ID_STRIDE + n`` with n = 1, 2, ... per patch: unique within a tract."""

FLAGS: dict[str, str] = {
    "flag_edge": "Footprint touches the EDGE mask or the patch's outer boundary.",
    "flag_noData": "Footprint touches NO_DATA pixels.",
    "flag_saturatedCenter": "A SAT pixel lies within 1 pixel of the centre in some band.",
    "flag_badCenter": "A BAD pixel lies within 1 pixel of the centre in some band.",
    "flag_momentsFailed": "Adaptive moments failed; shape and centroid are the footprint's moments.",
}
"""Flag columns (name -> description); every failure mode has one."""

OBJECT_COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "objectId": ("int64", None, "Object id, unique within the tract (patch * 10^7 + running number)."),
    "parentObjectId": ("int64", None, "Id of the blend this object belongs to; 0 when isolated."),
    "nChild": ("int32", None, "Number of sources in this object's blend (1 if isolated)."),
    "footprintLabel": ("int32", None, "Value of this object's pixels in galmix_footprints."),
    "patch": ("int32", None, "Patch id."),
    "x": ("float64", "pix", "Centroid x, tract pixels."),
    "y": ("float64", "pix", "Centroid y, tract pixels."),
    "ra": ("float64", "deg", "Right ascension of the centroid (ICRS)."),
    "dec": ("float64", "deg", "Declination of the centroid (ICRS)."),
    "shape_xx": ("float64", "pix2", "Adaptive second moment xx of the detection image (not PSF-corrected)."),
    "shape_yy": ("float64", "pix2", "Adaptive second moment yy of the detection image (not PSF-corrected)."),
    "shape_xy": ("float64", "pix2", "Adaptive second moment xy of the detection image (not PSF-corrected)."),
    "{band}_initFlux": ("float64", "nJy", "First-guess flux in band {band}: sum over the footprint."),
    "detect_isPatchInner": ("bool", None, "Centroid lies in the patch inner region."),
    "detect_isPrimary": ("bool", None, "Inner to this patch and a deblended leaf (every row is a leaf)."),
}


def object_columns(bands: list[str]) -> dict[str, tuple[str, str | None, str]]:
    """Return the ``galmix_objects`` columns (name -> (dtype, unit, description)) for some bands.

    Parameters
    ----------
    bands
        Bands of the input coadds.
    """
    columns: dict[str, tuple[str, str | None, str]] = {}
    for template, (dtype, unit, doc) in OBJECT_COLUMNS.items():
        for band in bands if "{band}" in template else [None]:
            columns[template.format(band=band)] = (dtype, unit, doc.format(band=band))
    for name, doc in FLAGS.items():
        columns[name] = ("bool", None, doc)
    return columns

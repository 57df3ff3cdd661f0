"""Datastore formatters of galmix's simulated repositories.

Only the repositories that `lsst.galmix.sim.make_repo` builds use them (it writes them into the
repository's datastore configuration): repositories of real coadds keep the formatters and compression
their producers chose, and galmix reads them as before.
"""

from __future__ import annotations

__all__ = ["UncompressedFitsFormatter"]

from typing import Any

from lsst.images.formatters import GenericFormatter

# The arrays a CellCoadd writes (FITS extension names, lower case); `tests/test_repo.py` checks that a
# simulated coadd has no compressed extension, so a new array name shows up there.
_ARRAY_NAMES = ("image", "mask", "variance", "psf")


class UncompressedFitsFormatter(GenericFormatter):
    """`lsst.images.formatters.GenericFormatter` that writes the FITS arrays without compression.

    Every task of the pipeline reads the coadds (detection, PSF fits, each model's fits), and astropy
    decompresses tiled GZIP_2 in Python: a CI coadd (400 x 400 pixels, 8 x 8 PSF kernels of 33 x 33) read
    back in 49 ms CPU compressed in tiles of one row of cells and 21 ms uncompressed, for 2.3 times the
    disk space (2.5 MB instead of 1.1 MB). The pixels read back are identical (lossless either way).

    Reads go through `GenericFormatter` unchanged (an uncompressed HDU reads like any other).
    """

    def _get_compression_options(self) -> dict[str, Any]:
        # Private hook of GenericFormatter (lsst-images): the per-array options passed to write_archive,
        # where None means "write an uncompressed ImageHDU". The write recipes (the public route) are
        # validated as FitsCompressionOptions and cannot say "no compression". If the hook disappears,
        # the coadds are written compressed again (still identical pixels) and the test of
        # tests/test_repo.py that checks for uncompressed extensions fails.
        return dict.fromkeys(_ARRAY_NAMES)

"""Observing conditions of the simulated coadds: depths, PSF and noise per band.

The depths are the LSST 10-year coadd 5-sigma point-source depths (Ivezic et al. 2019, table 1); the
PSF FWHM follows a seeing of 0.80 arcsec in r scaled as wavelength^-0.2. One source of truth: every
module that needs a depth, a PSF width or a noise level reads it from here.
"""

from __future__ import annotations

__all__ = (
    "BAND_CONDITIONS",
    "PSF_BETA",
    "SATURATION_NJY",
    "BandConditions",
    "PsfField",
    "mag_to_flux",
)

import dataclasses

import galsim
import numpy as np

from ..data.skymap import TractGeometry

SATURATION_NJY = 5.0e4
"""Pixel value (nJy) above which a coadd pixel is flagged SAT and clipped (stars brighter than r ~ 16.5)."""

PSF_BETA = 3.5
"""Moffat index of the simulated PSF (non-Gaussian wings)."""


def mag_to_flux(mag: np.ndarray | float) -> np.ndarray:
    """Convert AB magnitudes to fluxes in nJy (``31.4 - 2.5 log10(nJy)``).

    Parameters
    ----------
    mag
        AB magnitudes.
    """
    return np.power(10.0, -0.4 * (np.asarray(mag, dtype=float) - 31.4))


@dataclasses.dataclass(frozen=True)
class BandConditions:
    """Depth and seeing of one band of the simulated coadds.

    Parameters
    ----------
    band
        Band name.
    depth5
        5-sigma point-source depth (AB mag) for PSF-optimal photometry at the nominal PSF.
    psf_fwhm
        Nominal PSF FWHM at the tract centre, arcsec.
    """

    band: str
    depth5: float
    psf_fwhm: float


BAND_CONDITIONS: dict[str, BandConditions] = {
    "u": BandConditions("u", 25.6, 0.92),
    "g": BandConditions("g", 26.9, 0.86),
    "r": BandConditions("r", 26.9, 0.80),
    "i": BandConditions("i", 26.4, 0.77),
    "z": BandConditions("z", 25.6, 0.75),
    "y": BandConditions("y", 24.8, 0.73),
}


@dataclasses.dataclass(frozen=True)
class PsfField:
    """A Moffat PSF whose width and ellipticity vary smoothly (linearly) across the tract.

    Parameters
    ----------
    geometry
        Tract geometry (sets the pixel scale and the normalised coordinates of the variation).
    band
        Band name (sets the nominal FWHM).
    fwhm_gradient
        Fractional FWHM change from the tract centre to its edge along (x, y).
    g1, g2
        Reduced shear of the PSF at the tract centre.
    g_gradient
        Change of (g1, g2) from the centre to the edge along (x, y).
    """

    geometry: TractGeometry
    band: str
    fwhm_gradient: tuple[float, float] = (0.06, -0.04)
    g1: float = 0.025
    g2: float = -0.015
    g_gradient: tuple[float, float] = (0.02, 0.015)

    def _normalised(self, x: float, y: float) -> tuple[float, float]:
        return (
            (x - (self.geometry.nx - 1) / 2) / (self.geometry.nx / 2),
            (y - (self.geometry.ny - 1) / 2) / (self.geometry.ny / 2),
        )

    def fwhm(self, x: float, y: float) -> float:
        """Return the PSF FWHM (arcsec) at tract pixel (x, y).

        Parameters
        ----------
        x, y
            Tract pixel position.
        """
        u, v = self._normalised(x, y)
        base = BAND_CONDITIONS[self.band].psf_fwhm
        return base * (1.0 + self.fwhm_gradient[0] * u + self.fwhm_gradient[1] * v)

    def profile(self, x: float, y: float) -> galsim.GSObject:
        """Return the unit-flux GalSim PSF profile at tract pixel (x, y).

        Parameters
        ----------
        x, y
            Tract pixel position.
        """
        u, v = self._normalised(x, y)
        g1 = self.g1 + self.g_gradient[0] * u
        g2 = self.g2 + self.g_gradient[1] * v
        return galsim.Moffat(beta=PSF_BETA, fwhm=self.fwhm(x, y)).shear(g1=g1, g2=g2)

    def kernel_image(self, x: float, y: float, size: int) -> np.ndarray:
        """Render the PSF kernel image at (x, y), centred on the central pixel, integrated over pixels.

        Parameters
        ----------
        x, y
            Tract pixel position.
        size
            Side of the (odd) kernel image, pixels.
        """
        image = self.profile(x, y).drawImage(nx=size, ny=size, scale=self.geometry.pixel_scale)
        return image.array.astype(np.float64)

    def noise_sigma(self, size: int) -> float:
        """Return the per-pixel noise sigma (nJy) that gives the band's 5-sigma depth at the centre.

        The point-source S/N of PSF-optimal photometry is ``F / (sigma sqrt(n_eff))`` with
        ``n_eff = 1 / sum(p^2)`` of the unit-sum PSF image ``p``.

        Parameters
        ----------
        size
            Side of the kernel image used to compute ``n_eff``.
        """
        kernel = self.kernel_image((self.geometry.nx - 1) / 2, (self.geometry.ny - 1) / 2, size)
        kernel /= kernel.sum()
        n_eff = 1.0 / np.sum(kernel**2)
        return float(mag_to_flux(BAND_CONDITIONS[self.band].depth5) / (5.0 * np.sqrt(n_eff)))

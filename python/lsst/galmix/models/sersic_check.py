"""Check Sersic mixtures against GalSim's exact Sersic profile after PSF convolution.

Used by the tests and by ``benchmarks/bench_sersic_accuracy.py``. Both the exact profile
(``galsim.Sersic``) and the mixture (a sum of ``galsim.Gaussian``) are sheared to the same axis ratio
and angle, convolved with the same PSF and drawn with ``drawImage`` on the same pixel grid; then the
same measurement is applied to both images: the flux inside an elliptical aperture (the galaxy's axis
ratio and angle, semi-major axis ``aperture`` reff) and the half-light semi-major axis of the
elliptical curve of growth (the radius enclosing half of the known total flux).
"""

from __future__ import annotations

__all__ = [
    "ConvolvedMeasurement",
    "compare_to_galsim",
    "exact_sersic",
    "measure_convolved",
    "measure_profile",
    "mixture_profile",
]

import dataclasses

import galsim
import numpy as np
from scipy.optimize import brentq

from .sersic import DEFAULT_N_COMPONENTS, sersic_mixture

# Folding_threshold well below the tolerances: the n = 6 tail otherwise folds back into the FFT box.
_GSPARAMS = galsim.GSParams(folding_threshold=1.0e-4, maximum_fft_size=16384)


@dataclasses.dataclass(frozen=True)
class ConvolvedMeasurement:
    """Measurements of one PSF-convolved image.

    Attributes
    ----------
    flux : float
        Flux inside the elliptical aperture.
    hlr : float
        Semi-major axis (pixels) of the ellipse enclosing half of the total flux.
    """

    flux: float
    hlr: float


class _EllipticalApertures:
    """Flux inside ellipses of given semi-major axis, counting the pixels cut by the boundary by the
    fraction of an ``oversample x oversample`` grid of sub-pixel points inside (pixels are treated as
    uniform squares; each point enters linearly over a radial width of 1/oversample)."""

    def __init__(self, image: galsim.Image, q: float, position_angle: float, oversample: int = 8) -> None:
        values = image.array
        ny, nx = values.shape
        y, x = np.mgrid[:ny, :nx]
        self._c, self._s, self._q = np.cos(position_angle), np.sin(position_angle), q
        dx = (x + image.xmin - image.true_center.x).ravel()
        dy = (y + image.ymin - image.true_center.y).ravel()
        radius = self._radius(dx, dy)
        order = np.argsort(radius, kind="stable")
        self._radius_sorted = radius[order]
        self._dx, self._dy, self._values = dx[order], dy[order], values.ravel()[order]
        self._cumulative = np.concatenate([[0.0], np.cumsum(self._values)])
        # A pixel's corners are at most sqrt(2)/2 from its centre, i.e. sqrt(2)/(2q) in elliptical radius.
        self._step = 1.0 / oversample
        self._reach = np.sqrt(0.5) / q + self._step
        offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
        self._sub_x, self._sub_y = (v.ravel() for v in np.meshgrid(offsets, offsets))

    def _radius(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        major = self._c * dx + self._s * dy
        minor = -self._s * dx + self._c * dy
        return np.sqrt(major**2 + (minor / self._q) ** 2)

    def __call__(self, semi_major: float) -> float:
        lo, hi = np.searchsorted(self._radius_sorted, [semi_major - self._reach, semi_major + self._reach])
        sub_radius = self._radius(
            self._dx[lo:hi, None] + self._sub_x[None, :], self._dy[lo:hi, None] + self._sub_y[None, :]
        )
        # Each sub-pixel point enters over a radial width of its own size, so the curve of growth is
        # continuous (a hard step would quantise the half-light radius to ~1e-3 and hide differences).
        fraction = np.mean(np.clip((semi_major - sub_radius) / self._step + 0.5, 0.0, 1.0), axis=1)
        return float(self._cumulative[lo] + fraction @ self._values[lo:hi])


def measure_convolved(
    image: galsim.Image, total_flux: float, q: float, position_angle: float, aperture: float
) -> ConvolvedMeasurement:
    """Measure aperture flux and half-light semi-major axis from the elliptical curve of growth.

    Parameters
    ----------
    image : `galsim.Image`
        Image with the profile centred on ``image.true_center``.
    total_flux : float
        Total flux of the profile: the half-light radius encloses half of it.
    q, position_angle : float
        Axis ratio and position angle (radians, counter-clockwise from +x) of the apertures.
    aperture : float
        Semi-major axis (pixels) of the flux aperture.

    Returns
    -------
    measurement : `ConvolvedMeasurement`
        Flux inside the aperture and the semi-major axis enclosing ``total_flux / 2`` (root of the
        curve of growth; pixels cut by an ellipse count by the fraction of their area inside).
    """
    enclosed = _EllipticalApertures(image, q, position_angle)
    half = 0.5 * total_flux
    hi = 1.0
    while enclosed(hi) < half:
        hi *= 2.0
    hlr = brentq(lambda a: enclosed(a) - half, 0.0, hi, xtol=1e-6)
    return ConvolvedMeasurement(flux=enclosed(aperture), hlr=float(hlr))


def measure_profile(
    profile: galsim.GSObject,
    reff: float,
    psf: galsim.GSObject,
    q: float,
    position_angle: float,
    aperture: float = 20.0,
    margin: float = 12.0,
) -> ConvolvedMeasurement:
    """Shear a unit-flux circular profile, convolve it with the PSF, draw it and measure it.

    Parameters
    ----------
    profile : `galsim.GSObject`
        Circular profile of unit flux whose half-light radius is ``reff * sqrt(q)`` (GalSim sizes a
        sheared profile by the geometric-mean radius, so after the shear ``reff`` is along the major
        axis).
    reff : float
        Half-light radius along the major axis, pixels.
    psf : `galsim.GSObject`
        PSF (pixel scale 1).
    q, position_angle : float
        Axis ratio and position angle (radians).
    aperture : float
        Semi-major axis of the flux aperture, in units of ``reff``.
    margin : float
        Extra half-size of the stamp beyond the aperture, in pixels (room for the PSF wings).

    Returns
    -------
    measurement : `ConvolvedMeasurement`
        Flux in the aperture and half-light semi-major axis of the drawn image.
    """
    sheared = profile.shear(galsim.Shear(q=q, beta=position_angle * galsim.radians))
    half = int(np.ceil(aperture * reff + margin))
    image = galsim.Convolve(sheared, psf.withGSParams(_GSPARAMS), gsparams=_GSPARAMS).drawImage(
        nx=2 * half + 1, ny=2 * half + 1, scale=1.0
    )
    return measure_convolved(image, 1.0, q, position_angle, aperture * reff)


def exact_sersic(n: float, reff: float, q: float) -> galsim.GSObject:
    """Return GalSim's (untruncated) Sersic profile sized for `measure_profile`."""
    return galsim.Sersic(n=n, half_light_radius=reff * np.sqrt(q), gsparams=_GSPARAMS)


def mixture_profile(w: np.ndarray, s: np.ndarray, reff: float, q: float) -> galsim.GSObject:
    """Return a sum of Gaussians (weights ``w``, sigma ``s * reff``) sized for `measure_profile`."""
    return galsim.Add(
        [galsim.Gaussian(sigma=sk * reff * np.sqrt(q), flux=wk, gsparams=_GSPARAMS) for wk, sk in zip(w, s)]
    )


def compare_to_galsim(
    n: float,
    reff: float,
    psf: galsim.GSObject,
    q: float = 0.6,
    position_angle: float = 0.5,
    aperture: float = 20.0,
    n_components: int = DEFAULT_N_COMPONENTS,
) -> tuple[ConvolvedMeasurement, ConvolvedMeasurement]:
    """Render the exact Sersic and its mixture convolved with a PSF and measure both the same way.

    Parameters
    ----------
    n : float
        Sersic index.
    reff, psf, q, position_angle, aperture
        As in `measure_profile` (``reff`` is that of the exact profile).
    n_components : int
        Number of Gaussians of the mixture (`sersic_mixture`).

    Returns
    -------
    exact, mixture : `ConvolvedMeasurement`
        Measurements of the convolved exact profile and of the convolved mixture (unit total flux).
    """
    w, s, _, _ = sersic_mixture(n, n_components)
    return (
        measure_profile(exact_sersic(n, reff, q), reff, psf, q, position_angle, aperture),
        measure_profile(mixture_profile(w, s, reff, q), reff, psf, q, position_angle, aperture),
    )

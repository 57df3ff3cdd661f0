"""GalSim-rendered test data for the fitter's tests, benchmarks and examples.

Galaxies are exact GalSim profiles convolved with the PSF and drawn with GalSim's default pixel
integration; PSF kernel images are drawn the same way, so a mixture fitted to the kernel includes the
pixel response exactly as the fitter assumes (doc/conventions.rst).
"""

from __future__ import annotations

from dataclasses import dataclass

import galsim
import numpy as np
from astropy.table import Table

from ..models.definitions import get_model
from ..models.psf_mixture import PsfMixture
from ..schema import error_column, flux_column
from .config import SourceFitConfig
from .patch import fit_patch

__all__ = [
    "GalaxyTruth",
    "galsim_profile",
    "make_scene",
    "moffat_psf",
    "noise_sigma_for_flux_snr",
    "noise_sigma_for_snr",
    "psf_kernel",
    "render_stamp",
]


@dataclass
class GalaxyTruth:
    """Parameters of a simulated source.

    ``reff`` is the half-light radius along the major axis (pixels) and ``position_angle`` the angle of
    the major axis (radians, counter-clockwise from +x). ``bulge_frac`` (optional) adds a de Vaucouleurs
    component of that flux fraction and size ``bulge_reff``, sharing ``q`` and ``position_angle``;
    ``n = 0`` means a point source.
    """

    x: float
    y: float
    flux: float
    n: float = 1.0
    reff: float = 3.0
    q: float = 1.0
    position_angle: float = 0.0
    bulge_frac: float = 0.0
    bulge_reff: float = 1.5


def moffat_psf(fwhm: float, beta: float = 3.5) -> galsim.GSObject:
    """A Moffat PSF (``fwhm`` in pixels)."""
    return galsim.Moffat(beta=beta, fwhm=fwhm)


def psf_kernel(psf: galsim.GSObject, size: int = 41) -> np.ndarray:
    """Kernel image of a PSF (pixel-integrated, unit sum, centred on pixel ``size // 2``)."""
    img = psf.drawImage(nx=size, ny=size, scale=1.0).array
    return img / img.sum()


def _sersic(n: float, reff: float, q: float, position_angle: float, flux: float) -> galsim.GSObject:
    # GalSim's half_light_radius is that of the round profile; shearing by q at fixed area puts the
    # major-axis half-light radius at hlr / sqrt(q).
    prof = galsim.Sersic(n=n, half_light_radius=reff * np.sqrt(q), flux=flux, trunc=0)
    return prof.shear(q=q, beta=position_angle * galsim.radians)


def galsim_profile(t: GalaxyTruth) -> galsim.GSObject:
    """The (unconvolved) GalSim profile of a truth entry."""
    if t.n == 0:
        return galsim.DeltaFunction(flux=t.flux)
    disk = _sersic(t.n, t.reff, t.q, t.position_angle, t.flux * (1 - t.bulge_frac))
    if t.bulge_frac > 0:
        return disk + _sersic(4.0, t.bulge_reff, t.q, t.position_angle, t.flux * t.bulge_frac)
    return disk


def render_stamp(truths: list[GalaxyTruth], psf: galsim.GSObject, shape: tuple[int, int],
                 origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Noiseless image of sources convolved with a PSF.

    Parameters
    ----------
    truths : `list` [`GalaxyTruth`]
        Sources (absolute pixel positions).
    psf : `galsim.GSObject`
        PSF (pixels).
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)``.
    origin : `tuple` [`int`, `int`]
        Absolute ``(x, y)`` of pixel ``[0, 0]``.
    """
    ny, nx = shape
    image = galsim.ImageD(nx, ny, scale=1.0)
    gsp = galsim.GSParams(maximum_fft_size=16384, folding_threshold=1e-3)
    for t in truths:
        obj = galsim.Convolve(galsim_profile(t), psf, gsparams=gsp)
        # Offsets are relative to the image's true centre ((n-1)/2 in 0-based pixel coordinates).
        off = galsim.PositionD(t.x - origin[0] - (nx - 1) / 2, t.y - origin[1] - (ny - 1) / 2)
        obj.drawImage(image=image, offset=off, add_to_image=True)
    return image.array.copy()


def noise_sigma_for_snr(model: np.ndarray, snr: float) -> float:
    """Per-pixel noise sigma giving a source the optimal (matched-filter) S/N ``snr`` (GalSim's definition)."""
    return float(np.sqrt((model**2).sum()) / snr)


def noise_sigma_for_flux_snr(
    clean: np.ndarray, snr: float, objects: Table, psf: PsfMixture, model: str, config: SourceFitConfig
) -> float:
    """Per-pixel noise sigma at which ``model`` fitted to the noiseless ``clean`` has ``flux / fluxErr = snr``.

    This is the catalogue S/N of the fitted model (its flux error marginalised over the shape), lower than
    the optimal S/N by the information the shape parameters take: e.g. 8.1 against 20 for a free-index
    Sersic of r_e 0.86 PSF FWHM. The noiseless fit does not depend on the noise level and its flux error is
    nearly proportional to it (exactly, unless the Sersic index is near its lower bound, where its share of
    the errors depends on its own error: `ParameterBounds.covariance`), so a few rescalings converge.
    """
    name = get_model(model).name
    sigma = 1.0
    for _ in range(20):
        table = fit_patch({"r": (clean, np.full(clean.shape, sigma**2), None)}, (0, 0), objects, None,
                          {"r": psf}, model, config)
        ratio = float(table[flux_column(name, "r")][0] / table[error_column(flux_column(name, "r"))][0]) / snr
        sigma *= ratio
        if abs(ratio - 1.0) < 1e-9:
            break
    return sigma


def make_scene(
    truths: list[GalaxyTruth],
    psfs: dict[str, galsim.GSObject],
    colours: dict[str, float],
    shape: tuple[int, int],
    sigma: dict[str, float],
    rng: np.random.Generator,
    origin: tuple[int, int] = (0, 0),
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], Table]:
    """Multi-band noisy images of sources with per-band PSFs and flux ratios.

    Parameters
    ----------
    truths : `list` [`GalaxyTruth`]
        Sources; ``flux`` is the reference-band flux.
    psfs : `dict` [`str`, `galsim.GSObject`]
        PSF per band.
    colours : `dict` [`str`, `float`]
        Flux ratio of each band to the reference flux.
    shape : `tuple` [`int`, `int`]
        Image shape.
    sigma : `dict` [`str`, `float`]
        Noise sigma per band.
    rng : `numpy.random.Generator`
        Random generator.
    origin : `tuple` [`int`, `int`]
        Absolute origin.

    Returns
    -------
    images : `dict`
        Band -> ``(image, variance, bad)``.
    objects : `astropy.table.Table`
        ``objectId, x, y`` (the truth positions) and ``flux_<band>`` truth columns.
    """
    images = {}
    for band, psf in psfs.items():
        scaled = [GalaxyTruth(**{**t.__dict__, "flux": t.flux * colours[band]}) for t in truths]
        img = render_stamp(scaled, psf, shape, origin)
        img = img + rng.normal(0, sigma[band], shape)
        images[band] = (img, np.full(shape, sigma[band] ** 2), np.zeros(shape, bool))
    objects = Table()
    objects["objectId"] = np.arange(1, len(truths) + 1, dtype=np.int64)
    objects["x"] = [t.x for t in truths]
    objects["y"] = [t.y for t in truths]
    for band in psfs:
        objects[f"flux_{band}"] = [t.flux * colours[band] for t in truths]
    return images, objects

"""Flux error of the model family: a profile shared by all bands against galaxies with colour gradients.

The inverse Fisher matrix is the flux error of a model that describes the data. A free-index Sersic (or any
extended model) fitted with one shape in every band cannot follow a bulge + disk galaxy whose bands have
different profiles (disk-dominated in u, bulge-dominated in y), nor a composite profile in one band; the
flux of each band is then off by an amount that does not shrink with the noise. The fit's residuals do not
show it (the shape is held by the other bands and each band's flux is the projection of its data onto the
shared profile), so it is added as a population term measured on noiseless fits:

``sigma_misfit(band, component) = misfit_flux_fraction * R * |flux|``,

where ``R = r_c^2 / (r_c^2 + r_psf^2)`` is the component's resolution in that band (``r_c`` its
circularised half-light radius ``reff sqrt(q)``, ``r_psf`` the half-light radius of the band's PSF
mixture). ``R`` is the first-order response of a profile-fitted flux to a change of the assumed size (1
for a resolved Gaussian, 0 for a point source): unresolved sources (stars, point components) keep their
statistical errors. doc/fitting.rst ("Errors", model misfit) gives the measurement behind the default of
`lsst.galmix.fitting.config.SourceFitConfig.misfit_flux_fraction`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq

from ..models.definitions import ModelDef
from ..models.psf_mixture import PsfMixture
from .source import SourceOutcome

__all__ = ["add_misfit_errors", "misfit_flux_sigma", "psf_half_light_radius", "resolution"]


def psf_half_light_radius(psf: PsfMixture) -> float:
    """Half-light radius (pixels) of a PSF mixture, each Gaussian taken round with its mean variance.

    Parameters
    ----------
    psf : `PsfMixture`
        The mixture (its fractions need not sum to 1).

    Returns
    -------
    radius : `float`
        Radius enclosing half the mixture's light; NaN for a mixture without positive light.
    """
    frac = np.asarray(psf.frac, float)
    var = 0.5 * (np.asarray(psf.xx, float) + np.asarray(psf.yy, float))
    # The objects of a cell share its PSF (each in a mixture of its own): solve once per distinct
    # (frac, var) (the value is a function of them only, so cached and fresh results are identical).
    return _half_light_radius_of(frac.tobytes(), var.tobytes())


@lru_cache(maxsize=4096)
def _half_light_radius_of(frac: bytes, var: bytes) -> float:
    return _half_light_radius(np.frombuffer(frac), np.frombuffer(var))


def _half_light_radius(frac: np.ndarray, var: np.ndarray) -> float:
    total = float(frac.sum())
    if not (total > 0 and np.isfinite(var).all() and (var > 0).all()):
        return float("nan")

    def excess(r: float) -> float:
        return float(np.sum(frac * (1.0 - np.exp(-0.5 * r * r / var)))) / total - 0.5

    hi = 10.0 * float(np.sqrt(var.max()))
    if excess(hi) <= 0:
        return float("nan")
    return float(brentq(excess, 0.0, hi, xtol=1e-6))


def resolution(ln_reff: float, eta1: float, eta2: float, psf_radius: float) -> float:
    """Resolution ``r_c^2 / (r_c^2 + r_psf^2)`` of a component of shape ``(ln reff, eta1, eta2)`` (pixels).

    ``r_c^2 = reff^2 q`` with ``q = exp(-|eta|)`` is the squared circularised half-light radius. Returns 0
    when any input is not finite (no term is added).
    """
    if not (np.isfinite([ln_reff, eta1, eta2, psf_radius]).all() and psf_radius > 0):
        return 0.0
    rc2 = float(np.exp(2.0 * ln_reff - np.hypot(eta1, eta2)))
    return rc2 / (rc2 + psf_radius**2)


def misfit_flux_sigma(
    model: ModelDef, theta: np.ndarray, fluxes: np.ndarray, psfs: Sequence[PsfMixture | None], fraction: float
) -> np.ndarray:
    """Per band and component, the flux error of the model misfit (``fraction * R * |flux|``).

    Parameters
    ----------
    model : `ModelDef`
        The source's model.
    theta : `numpy.ndarray`
        Its nonlinear parameters (fitter layout: centroid when free, then per extended component
        ``ln reff, eta1, eta2`` and ``n`` when free).
    fluxes : `numpy.ndarray`
        ``(n_band, n_comp)`` fluxes.
    psfs : sequence of `PsfMixture` or `None`
        PSF per band at the source.
    fraction : `float`
        Misfit per unit resolution (relative flux).

    Returns
    -------
    sigma : `numpy.ndarray`
        ``(n_band, n_comp)``; 0 for point components, bands without a PSF and non-finite fluxes.
    """
    fluxes = np.asarray(fluxes, float)
    sigma = np.zeros(fluxes.shape)
    if fraction <= 0:
        return sigma
    radii = [psf_half_light_radius(p) if p is not None else float("nan") for p in psfs]
    i = 2 if model.free_centroid else 0
    for c, comp in enumerate(model.components):
        if not comp.has_shape:
            continue
        ln_reff, eta1, eta2 = (float(v) for v in theta[i : i + 3])
        i += len(comp.nonlinear_names)
        for b in range(fluxes.shape[0]):
            if b < len(radii) and np.isfinite(fluxes[b, c]):
                sigma[b, c] = fraction * resolution(ln_reff, eta1, eta2, radii[b]) * abs(fluxes[b, c])
    return sigma


def add_misfit_errors(
    outcome: SourceOutcome, psfs: Sequence[PsfMixture | None] | None, fraction: float
) -> SourceOutcome:
    """The outcome with the model-misfit variance added to each band's flux covariance.

    Parameters
    ----------
    outcome : `SourceOutcome`
        A fit (not modified).
    psfs : sequence of `PsfMixture` or `None`, or `None`
        PSF per band at the source (`None`: the outcome is returned unchanged).
    fraction : `float`
        ``SourceFitConfig.misfit_flux_fraction`` (0: unchanged).

    Returns
    -------
    outcome : `SourceOutcome`
        A copy with new ``flux_cov`` arrays (the statistical covariance plus ``diag(sigma_misfit^2)``), or
        ``outcome`` itself when nothing is added.
    """
    if psfs is None or fraction <= 0 or not np.isfinite(outcome.theta).all():
        return outcome
    sigma = misfit_flux_sigma(outcome.spec.model, outcome.theta, outcome.fluxes, psfs, fraction)
    if not sigma.any():
        return outcome
    flux_cov = [None if cov is None else np.asarray(cov, float) + np.diag(sigma[b] ** 2)
                for b, cov in enumerate(outcome.flux_cov)]
    return dataclasses.replace(outcome, flux_cov=flux_cov)

"""Settings of the fitting library as `lsst.pex.config` classes: one default and one doc per setting.

The PipelineTasks embed these classes with `lsst.pex.config.ConfigField` (``fitCoaddMultiband``:
``config.fit``, ``fitCoaddPsf``: ``config.psf``), so every setting is reachable from a pipeline YAML or a
``-c``/``-C`` override with its documentation. Library functions take an instance and construct the default
one when none is given. Only `lsst.pex.config` is imported here, never `lsst.pipe.base`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lsst.pex.config as pexConfig

from ..models.definitions import N_MAX, N_MIN

__all__ = ["FitSettings", "Priors", "PsfFitConfig", "SourceFitConfig"]


def _check_mean_sigma(config: pexConfig.Config, field: Any, value: Sequence[float] | None) -> None:
    if value is not None and value[1] <= 0:
        raise pexConfig.FieldValidationError(field, config, "[mean, sigma] needs sigma > 0")


def _check_interval(config: pexConfig.Config, field: Any, value: Sequence[float]) -> None:
    if not value[0] < value[1]:
        raise pexConfig.FieldValidationError(field, config, "[lower, upper] needs lower < upper")


class Priors(pexConfig.Config):
    """Optional Gaussian priors on the nonlinear parameters; unset (`None`) means no prior.

    By default none is set and the fit is pure maximum likelihood.
    """

    ln_reff = pexConfig.ListField[float](
        doc="Gaussian prior on ln reff (reff in pixels): [mean, sigma]; None for none",
        default=None,
        optional=True,
        length=2,
    )
    eta_sigma = pexConfig.Field[float](
        doc="Sigma of a Gaussian prior on each conformal-shear component (eta1, eta2) about 0, which "
        "favours round shapes; None for none",
        default=None,
        optional=True,
        check=lambda v: v is None or v > 0,
    )
    n = pexConfig.ListField[float](
        doc="Gaussian prior on the Sersic index of free-index components: [mean, sigma]; None for none",
        default=None,
        optional=True,
        length=2,
    )

    def validate(self) -> None:
        super().validate()
        _check_mean_sigma(self, Priors.ln_reff, self.ln_reff)
        _check_mean_sigma(self, Priors.n, self.n)


class FitSettings(pexConfig.Config):
    """Settings of the Levenberg-Marquardt optimizer (`lsst.galmix.fitting.engine_backend`)."""

    max_iter = pexConfig.RangeField(
        dtype=int,
        doc="Maximum number of Levenberg-Marquardt steps (accepted or rejected) per fit; 0 evaluates the "
        "Fisher matrix (errors) at the starting point only",
        default=100,
        min=0,
    )
    rtol = pexConfig.RangeField(
        dtype=float,
        doc="Convergence: relative chi-square decrease of an accepted step below this", default=1e-6, min=0.0
    )
    xtol = pexConfig.RangeField(
        dtype=float,
        doc="Convergence: every parameter's accepted step below xtol times its (conditional) error, scaled "
        "by the residual level",
        default=1e-4,
        min=0.0,
    )
    warm_lambda0 = pexConfig.RangeField(
        dtype=float,
        doc="Initial Levenberg-Marquardt damping (relative to the diagonal of the normal equations) of a "
        "refit that starts from a fitted solution (a group refitted on grown stamps or with a sky, the later "
        "sweeps of blend block fits); fits from moments start at the engine's 1",
        default=1e-2,
        min=1e-10,
        max=1e10,
    )
    n_bounds = pexConfig.ListField[float](
        doc="Bounds [lower, upper] of the Sersic index (the mixture tables cover "
        f"{N_MIN} <= n <= {N_MAX})",
        default=[N_MIN, N_MAX],
        length=2,
    )
    reff_bounds = pexConfig.ListField[float](
        doc="Bounds [lower, upper] of reff (pixels)", default=[1e-2, 1e3], length=2
    )
    centroid_max_shift = pexConfig.Field[float](
        doc="A free centre stays within this many times max(PSF FWHM, starting reff) of its detection "
        "position, so that a child of a blend cannot leave its footprint or move onto a neighbour; None: "
        "unbounded",
        default=2.0,
        optional=True,
        check=lambda v: v is None or v > 0,
    )
    priors = pexConfig.ConfigField[Priors](doc="Priors on the nonlinear parameters", dtype=Priors)

    def validate(self) -> None:
        super().validate()
        _check_interval(self, FitSettings.n_bounds, self.n_bounds)
        _check_interval(self, FitSettings.reff_bounds, self.reff_bounds)
        if not (N_MIN <= self.n_bounds[0] and self.n_bounds[1] <= N_MAX):
            raise pexConfig.FieldValidationError(
                FitSettings.n_bounds, self, f"The Sersic mixtures cover {N_MIN} <= n <= {N_MAX} only"
            )
        if self.reff_bounds[0] <= 0:
            raise pexConfig.FieldValidationError(FitSettings.reff_bounds, self, "reff bounds must be > 0")


class PsfFitConfig(pexConfig.Config):
    """Settings of the Gaussian-mixture fits of PSF kernel images (`lsst.galmix.fitting.psf`)."""

    n_gauss = pexConfig.RangeField(
        dtype=int,
        doc="Gaussians in the PSF mixture. With fewer than 4, extended sources absorb the PSF wings the "
        "mixture misses into their size and index (2 Gaussians on a Moffat PSF: n = 4 galaxies come out "
        "0.036 mag bright, n +0.28; 4 Gaussians: <= 0.001 mag; doc/fitting.rst)",
        default=4,
        min=1,
        max=4,
        inclusiveMax=True,
    )
    max_iter = pexConfig.RangeField(dtype=int, doc="Optimizer iteration limit of one PSF fit", default=200, min=1)


class SourceFitConfig(pexConfig.Config):
    """Settings of source and blend fitting (`lsst.galmix.fitting.patch.fit_patch`; doc/fitting.rst)."""

    pixel_scale = pexConfig.RangeField(
        dtype=float,
        doc="Arcsec per pixel, for reff in arcsec (fitCoaddMultiband replaces it with the scale of the "
        "coadd's WCS at the patch origin)",
        default=0.2,
        min=0.0,
        inclusiveMin=False,
    )
    stamp_sigmas = pexConfig.RangeField(
        dtype=float,
        doc="Half-sizes of the first stamp in observed (PSF-convolved, adaptive-moment) sigma along x and "
        "along y; after the first fit the stamp grows (stamp_flux_fraction, stamp_edge_noise)",
        default=4.5,
        min=0.0,
        inclusiveMin=False,
    )
    stamp_min = pexConfig.RangeField(dtype=int, doc="Smallest stamp half-size (pixels)", default=10, min=1)
    stamp_max = pexConfig.RangeField(dtype=int, doc="Largest stamp half-size (pixels)", default=160, min=1)
    stamp_flux_fraction = pexConfig.RangeField(
        dtype=float,
        doc="After the first fit the stamp grows until at most this fraction of the model light lies beyond "
        "its edge, or stamp_edge_noise holds (lsst.galmix.fitting.stamps.required_half_size); 0 for both "
        "disables growing",
        default=0.005,
        min=0.0,
    )
    stamp_edge_noise = pexConfig.RangeField(
        dtype=float,
        doc="... or until the model surface brightness at the edge is below this fraction of the pixel "
        "noise (no pixel further out would carry information)",
        default=0.05,
        min=0.0,
    )
    sky = pexConfig.ChoiceField[str](
        doc="Local sky fitted jointly with the sources, linear like the fluxes",
        default="auto",
        allowed={
            "auto": "A flat level per band where at least sky_min_background of the stamp's pixels lie beyond "
            "3 observed sigma of every source and their mean is significantly non-zero",
            "flat": "A flat level per band, always",
            "plane": "A plane per band (level and gradients along x and y), always",
            "none": "Never",
        },
    )
    sky_min_background = pexConfig.RangeField(
        dtype=float,
        doc="Fraction of background pixels a stamp needs for sky='auto'", default=0.5, min=0.0, max=1.0
    )
    n_init = pexConfig.Field[float](doc="Starting Sersic index of free-index components", default=2.0)
    blend_mode = pexConfig.ChoiceField[str](
        doc="How the children of a blend are fitted",
        default="joint",
        allowed={
            "joint": "Simultaneously, on shared pixels",
            "subtract": "Each on its own stamp with its neighbours' models subtracted",
        },
    )
    subtract_iterations = pexConfig.RangeField(
        dtype=int,
        doc="Most sweeps of refitting with neighbours subtracted (blend_mode='subtract', and blends above "
        "max_children, fitted in blocks of max_children); the sweeps stop earlier once no child changes",
        default=6,
        min=1,
    )
    max_children = pexConfig.RangeField(
        dtype=int,
        doc="Largest blend fitted jointly; larger ones are fitted in blocks with neighbours subtracted "
        "(too_many_children)",
        default=5,
        min=1,
    )
    use_footprints = pexConfig.Field[bool](
        doc="Give zero weight to pixels owned by objects outside the group being fitted", default=True
    )
    footprint_only = pexConfig.Field[bool](
        doc="With footprints, fit only the pixels of the object's (or blend's) own footprint; otherwise "
        "unowned (label 0) pixels are used too",
        default=False,
    )
    n_threads = pexConfig.RangeField(
        dtype=int,
        doc="Threads fitting within one call (C++ batch of isolated objects; blends in parallel)",
        default=1,
        min=1,
    )
    residual_threshold = pexConfig.RangeField(
        dtype=float,
        doc="Significance (sigma of the PSF-smoothed multi-band residual) above which a residual peak "
        "becomes a point source fitted with the object (a source detection missed); 0 disables the search",
        default=5.0,
        min=0.0,
    )
    residual_min_separation = pexConfig.RangeField(
        dtype=float,
        doc="Residual peaks nearer than this (PSF FWHM) to a fitted centre are the object's own misfit",
        default=1.0,
        min=0.0,
    )
    residual_max_sources = pexConfig.RangeField(
        dtype=int,
        doc="Most residual sources per fitted group", default=3, min=0
    )
    residual_max_iter = pexConfig.RangeField(
        dtype=int,
        doc="Iteration limit of a refit with residual sources (it starts from the converged first fit: "
        "adding a missed neighbour converges in a few steps, while a refit that needs more is trading light "
        "between the group's sources, e.g. an object running away into a streak beside a bright star); a "
        "refit that reaches it is not accepted and the first fit is kept",
        default=40,
        min=1,
    )
    misfit_flux_fraction = pexConfig.RangeField(
        dtype=float,
        doc="Model-misfit flux error per unit resolution: each extended component's flux error in each band "
        "gets fraction * R * |flux| added in quadrature, R = r_c^2 / (r_c^2 + r_psf^2) its resolution "
        "(lsst.galmix.fitting.misfit; default measured on noiseless fits of bulge + disk galaxies with "
        "colour gradients, doc/fitting.rst); 0 keeps the statistical errors",
        default=0.02,
        min=0.0,
    )
    psf = pexConfig.ConfigField[PsfFitConfig](
        doc="Fits of PSFs supplied as kernel images (a callable per band, not a PSF-fit table)",
        dtype=PsfFitConfig,
    )
    settings = pexConfig.ConfigField[FitSettings](doc="Optimizer settings and priors", dtype=FitSettings)

    def validate(self) -> None:
        super().validate()
        if self.stamp_min > self.stamp_max:
            raise pexConfig.FieldValidationError(SourceFitConfig.stamp_min, self, "stamp_min > stamp_max")

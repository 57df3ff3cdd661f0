"""Inputs, settings and results of a fit, the bounds of its parameters and the inversion of its Fisher matrix.

Every fit runs in the C++ engine (`lsst.galmix.fitting.engine_backend`). The nonlinear parameters of a
fit (``theta``) are, source by source, those of `lsst.galmix.models.definitions.ModelDef.nonlinear_kinds`:
the engine's parameters of that source without its fluxes (and without its centre when the centre is
fixed). The fluxes follow per band with data, component by component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..engine import ParamKind
from ..models.definitions import ModelDef
from ..models.psf_mixture import PsfMixture
from .config import FitSettings

__all__ = [
    "BandInput",
    "ParameterBounds",
    "SceneFit",
    "SourceSpec",
    "invert_fisher",
    "nan_to_num",
]


def nan_to_num(a: np.ndarray, nan: float = 0.0) -> np.ndarray:
    """`numpy.nan_to_num` (a new array), without its cost where ``a`` is already finite.

    The arrays of a fit (fluxes, errors) are almost always finite, and `numpy.nan_to_num` costs several
    times the test on small arrays; where every value is finite the result is a copy of ``a``, as
    `numpy.nan_to_num` would return.
    """
    a = np.asarray(a)
    if np.isfinite(a).all():
        return a.copy()
    return np.nan_to_num(a, nan=nan)


@dataclass
class BandInput:
    """One band's stamp for a fit.

    Attributes
    ----------
    image : `numpy.ndarray`
        Data (neighbours' models already subtracted), zero where the weight is zero.
    weight : `numpy.ndarray`
        Inverse variance (0 = excluded).
    x0, y0 : `int`
        Absolute coordinates of ``image[0, 0]``.
    psf : `PsfMixture`
        PSF of the band.
    """

    image: np.ndarray
    weight: np.ndarray
    x0: int
    y0: int
    psf: PsfMixture


@dataclass


@dataclass
class SourceSpec:
    """One source of a (joint) fit.

    Attributes
    ----------
    model : `ModelDef`
        Its model.
    xy_fixed : `tuple` [`float`, `float`]
        Its centre when the model's centroid is fixed.
    """

    model: ModelDef
    xy_fixed: tuple[float, float]

    @property
    def n_theta(self) -> int:
        """Number of nonlinear parameters."""
        return self.model.n_nonlinear

    @property
    def n_comp(self) -> int:
        """Number of components (linear fluxes per band)."""
        return len(self.model.components)


@dataclass
class SceneFit:
    """Result of one fit.

    Attributes
    ----------
    theta : `numpy.ndarray`
        Best-fit nonlinear parameters (natural units).
    fluxes : `numpy.ndarray`
        ``(n_band, n_comp)`` fluxes (NaN for bands without data).
    cov : `numpy.ndarray`
        Covariance (inverse Fisher) of ``[theta, fluxes of band 0, band 1, ...]`` (bands with data only);
        NaN when singular.
    chi2 : `float`
        Best-fit chi-square (without the prior term).
    n_iter : `int`
        Number of iterations.
    converged : `bool`
        Whether the convergence criterion was met.
    at_bound : `bool`
        Whether a bounded parameter ended within 1e-3 (relative) of a bound.
    singular : `bool`
        Whether the Fisher matrix was singular.
    failed : `bool`
        Whether the optimizer reported an error or non-finite values.
    message : `str`
        Optimizer message.
    seconds : `float`
        Wall-clock seconds of this fit (engine: measured in C++ per problem, plus the conversion of
        its result), NaN when not measured.
    unconstrained : `numpy.ndarray` or `None`
        Boolean per nonlinear parameter: unconstrained by the data and held for the errors
        (`lsst.galmix.fitting.errors.conditional_covariance`); its error is NaN.
    sky, sky_err : `numpy.ndarray` or `None`
        Per band, the fitted flat sky level (data units per pixel) and its error, marginalised over
        all other parameters (NaN for bands without data); `None` when no sky was fitted. With a sky plane,
        the level at ``sky_origin``.
    sky_plane, sky_plane_cov : `numpy.ndarray` or `None`
        With a sky plane, per band ``(level, gradient x, gradient y)`` about ``sky_origin`` (data units per
        pixel, per pixel per pixel) and their ``3 x 3`` covariance; `None` otherwise.
    sky_origin : `tuple` [`float`, `float`] or `None`
        The absolute pixel position about which the sky plane is expanded.
    unit_models : `list` [`numpy.ndarray` or `None`] or `None`
        Per band, ``(n_comp, ny, nx)``: each source component's model at unit flux and the nonlinear
        parameters ``theta``, at the stamp's weighted pixels (0 elsewhere; `None` for bands without data),
        written by the engine's last pass over the pixels; `None` when the engine returned none.
    """

    theta: np.ndarray
    fluxes: np.ndarray
    cov: np.ndarray
    chi2: float
    n_iter: int
    converged: bool
    at_bound: bool
    singular: bool
    failed: bool = False
    message: str = ""
    seconds: float = float("nan")
    unconstrained: np.ndarray | None = None
    sky: np.ndarray | None = None
    sky_err: np.ndarray | None = None
    sky_plane: np.ndarray | None = None
    sky_plane_cov: np.ndarray | None = None
    sky_origin: tuple[float, float] | None = None
    unit_models: list[np.ndarray | None] | None = None


class ParameterBounds:
    """Box bounds of the bounded parameters (``n``, ``ln reff``) of a list of nonlinear parameters.

    Enforced by projection, as in the engine: trial points are projected onto the box and a parameter
    at a bound whose gradient points outward is held for that step (a logistic map onto the real line
    traps parameters near a bound, where its derivative vanishes).

    Parameters
    ----------
    kinds : sequence of `lsst.galmix.engine.ParamKind`
        Kind of each nonlinear parameter (`ModelDef.nonlinear_kinds` of the sources, concatenated).
    settings : `FitSettings`
        ``n_bounds`` and ``reff_bounds``.
    """

    def __init__(self, kinds: Sequence[ParamKind], settings: FitSettings) -> None:
        lo, hi = np.full(len(kinds), -np.inf), np.full(len(kinds), np.inf)
        # Sersic indices: not fixed at their upper bound, capped near their lower one (`covariance`).
        self.is_index = np.array([kind == ParamKind.SERSIC_N for kind in kinds], bool)
        for i, kind in enumerate(kinds):
            if self.is_index[i]:
                lo[i], hi[i] = settings.n_bounds
            elif kind == ParamKind.LN_REFF:
                lo[i], hi[i] = np.log(settings.reff_bounds[0]), np.log(settings.reff_bounds[1])
        self.lo, self.hi = lo, hi
        # The "near a bound" tolerances depend on the bounds only: computed once, not per test.
        self._finite = np.isfinite(lo) & np.isfinite(hi)
        self._tol = np.where(self._finite, 1e-3 * (hi - lo), 0.0)
        # Shared by the problems of one layout (`engine_backend.make_problem`): read-only.
        for a in (self.lo, self.hi, self.is_index, self._finite, self._tol):
            a.flags.writeable = False

    def _near(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per parameter: within 1e-3 of its bound range from its lower / upper bound."""
        finite, tol = self._finite, self._tol
        return finite & (theta - self.lo < tol), finite & (self.hi - theta < tol)

    def at_bound(self, theta: np.ndarray) -> bool:
        """Whether any bounded parameter is at a bound (the ``param_at_bound`` flag)."""
        near_lo, near_hi = self._near(theta)
        return bool((near_lo | near_hi).any())

    def fixed_for_errors(self, theta: np.ndarray) -> np.ndarray:
        """Parameters at a bound on which the errors are made conditional (`invert_fisher`).

        Where the likelihood is steep at the bound, a parameter held there is fixed: ``reff`` at its
        limits and ``n`` at 0.5 (the Gaussian, where the profile family ends and fits of flat profiles
        pile up). ``n`` at its upper bound is not: profiles with n >~ 4 differ only in their faint
        wings, the likelihood is flat there and the data leave the index free far inside the bound, so
        the marginal errors hold. Measured (doc/fitting.rst, error calibration): fixing n at 6 made the
        flux errors of n = 4 galaxies at S/N 20 10-17% too small; fixing it at 0.5 calibrated the
        ``reff`` errors of low-index galaxies (0.84 -> 0.97).
        """
        near_lo, near_hi = self._near(theta)
        return near_lo | (near_hi & ~self.is_index)

    def covariance(self, fisher: np.ndarray, theta: np.ndarray, hold: np.ndarray | None = None,
                   at_bound: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
        """Covariance of ``[theta, fluxes]`` from their Fisher matrix (``theta`` rows first).

        Parameters at a bound in `fixed_for_errors` are fixed (`invert_fisher`), and so are those in
        ``hold`` (boolean per ``theta`` or per row of ``fisher``; unconstrained parameters,
        `errors.conditional_covariance`); ``at_bound``: `fixed_for_errors` of ``theta`` when the caller
        has it. A Sersic index above its lower bound cannot move below it either: its share of the other
        parameters' variances is scaled by ``min(1, (n - n_min)^2 / var(n))``, i.e. its uncertainty is
        capped at its distance from the bound. This makes the errors continuous across the bound (fixed
        there, marginal from one sigma above it); without it the fits of small low-index galaxies just
        above n = 0.5 had error spreads of ~0.8 (doc/fitting.rst, error calibration).
        """
        npar = len(theta)
        fixed = np.zeros(len(fisher), bool)
        fixed[:npar] = self.fixed_for_errors(theta) if at_bound is None else at_bound
        if hold is not None:
            fixed[: len(hold)] |= hold
        cov, singular = invert_fisher(fisher, fixed)
        if singular:
            return cov, singular
        if not self.is_index.any():
            return cov, singular
        for i in np.flatnonzero(self.is_index & ~fixed[:npar]):
            var = cov[i, i]
            share = min(1.0, (theta[i] - self.lo[i]) ** 2 / var) if var > 0 else 1.0
            if share < 1.0:
                cov = cov - (1.0 - share) * np.outer(cov[:, i], cov[i, :]) / var
        return cov, singular


def invert_fisher(fisher: np.ndarray, fixed: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Covariance from a Fisher matrix (NaN and ``True`` when it is singular).

    The matrix is scaled to unit diagonal before the condition-number test, so parameters of very
    different units (fluxes in nJy, ``ln reff``) do not look singular.

    Parameters flagged in ``fixed`` (boolean, one per row; `ParameterBounds.fixed_for_errors`) are held
    at a bound: the estimate is then the maximum of the likelihood under an active constraint, whose
    covariance is that of the other parameters with these fixed, the inverse of the Fisher matrix without
    their rows and columns. Marginalising over an index that cannot move past its bound overstates the
    other errors: with n piled up at 0.5 the ``reff`` pulls shrank to ~0.75 (doc/fitting.rst, error
    calibration). The variances of the fixed parameters are NaN (no symmetric error exists there).
    """
    if fixed is None or not (fixed.any() if isinstance(fixed, np.ndarray) else np.any(fixed)):
        return _invert_scaled(fisher)
    fixed = np.asarray(fixed, bool)
    # Index arrays select the same rows and columns as `numpy.ix_` of the masks, without its set-up.
    free, held = np.flatnonzero(~fixed), np.flatnonzero(fixed)
    cov = np.zeros(fisher.shape)
    sub, singular = _invert_scaled(fisher[free[:, None], free])
    cov[free[:, None], free] = sub
    cov[held, held] = np.nan
    return cov, singular


def _invert_scaled(fisher: np.ndarray) -> tuple[np.ndarray, bool]:
    """The inverse of a Fisher matrix, by its unit-diagonal scaling (NaN and ``True`` if singular)."""
    try:
        scale = np.sqrt(fisher.diagonal())
        if not (np.isfinite(fisher).all() and (scale > 0).all()):
            raise np.linalg.LinAlgError
        outer = scale[:, None] * scale[None, :]  # `numpy.outer`, once for both scalings
        norm = fisher / outer
        # The 2-norm condition number of a symmetric matrix from its eigenvalues (cheaper than an SVD).
        lam = np.abs(np.linalg.eigvalsh(norm))
        if not lam.min() * 1e12 >= lam.max():
            raise np.linalg.LinAlgError
        cov = np.linalg.inv(norm) / outer
        return cov, False
    except np.linalg.LinAlgError:
        return np.full(fisher.shape, np.nan), True

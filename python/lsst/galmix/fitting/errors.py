"""Errors that stay finite when the data do not constrain a shape parameter.

The covariance of a fit is the inverse of its Fisher matrix (`ParameterBounds.covariance`). For a
point-like or barely resolved object the shape of an extended model (its ellipticity, its Sersic index,
at the smallest sizes its size) does not change the model image: the Fisher matrix is singular or its
inverse gives that parameter an error far beyond the range the parameter can take. Such parameters are
*held*: the other errors (fluxes, centroid, constrained shape parameters) are conditional on them, as for
parameters at a bound, and the held parameters' own errors are NaN (the ``shape_unconstrained`` flag).
Fluxes and the centroid are never held.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np

from ..engine import ParamKind

__all__ = ["UNCONSTRAINED_SIGMA", "conditional_covariance"]

UNCONSTRAINED_SIGMA: dict[ParamKind, float] = {ParamKind.LN_REFF: 2.0, ParamKind.ETA1: 2.0, ParamKind.ETA2: 2.0}
"""A shape parameter whose marginal error exceeds this is unconstrained and held.

``ln reff`` +-2 is a factor 7 in size, ``eta`` +-2 spans axis ratios 1 to 0.14 in any direction: such a
measurement says nothing about the parameter, and marginalising the fluxes over that range would
propagate the model family's extrapolation, not the data. A Sersic index is held only where the Fisher
matrix is singular: a large but finite index error is real (its share of the other errors is capped near
the lower bound by `ParameterBounds.covariance`), and holding it made the ``reff`` errors of resolved
S/N 20 galaxies too small (pull spread 0.86 -> 0.94 over 400 realisations, tests/test_fit_profile.py).
"""


class _Bounds(Protocol):
    lo: np.ndarray
    hi: np.ndarray
    is_index: np.ndarray

    def fixed_for_errors(self, theta: np.ndarray) -> np.ndarray: ...

    def covariance(self, fisher: np.ndarray, theta: np.ndarray, hold: np.ndarray | None = None,
                   at_bound: np.ndarray | None = None
                   ) -> tuple[np.ndarray, bool]: ...  # hold: per theta, or per parameter of the matrix


def _limits(kinds: Sequence[ParamKind], bounds: _Bounds) -> np.ndarray:
    """Per nonlinear parameter, the error above which it is unconstrained (inf: never held; read-only).

    Kept per kind sequence (and indices): every fit of a layout asks for the same limits. The fits of a
    layout share its kinds and bounds objects (`engine_backend` templates), so those are looked up first by
    identity: hashing the kinds (engine enums) costs more than the rest of the lookup.
    """
    key = (id(kinds), id(bounds))
    hit = _KEPT_LIMITS.get(key)
    # The entry holds the kinds and bounds, so their ids cannot be reused by other objects while it lives.
    if hit is not None and hit[0] is kinds and hit[1] is bounds:
        return hit[2]
    out = _limits_of(tuple(kinds), bounds.is_index.tobytes())
    if len(_KEPT_LIMITS) >= 256:
        _KEPT_LIMITS.clear()
    _KEPT_LIMITS[key] = (kinds, bounds, out)
    return out


_KEPT_LIMITS: dict[tuple[int, int], tuple[object, object, np.ndarray]] = {}


@lru_cache(maxsize=256)
def _limits_of(kinds: tuple[ParamKind, ...], is_index: bytes) -> np.ndarray:
    index = np.frombuffer(is_index, dtype=bool)
    out = np.full(len(kinds), np.inf)
    for i, kind in enumerate(kinds):
        if index[i]:
            # Held when singular only (`_weakest` takes every finite-limit parameter as a candidate).
            out[i] = np.finfo(float).max
        elif kind in UNCONSTRAINED_SIGMA:
            out[i] = UNCONSTRAINED_SIGMA[kind]
    out.flags.writeable = False
    return out


def _weakest(fisher: np.ndarray, fixed: np.ndarray, candidates: np.ndarray) -> int | None:
    """The parameter to hold next (`None`: none can be).

    A free parameter without information (non-positive Fisher diagonal: a source whose model has no
    light on the pixels, or no flux to move) comes first, whatever its kind; otherwise the candidate
    carrying most of the Fisher matrix's weakest direction.
    """
    free = ~fixed
    diag = np.diag(fisher)
    dead = free & ~(diag > 0)
    if dead.any():
        return int(np.flatnonzero(dead)[0])
    idx = np.flatnonzero(free)
    sub = fisher[np.ix_(idx, idx)]
    scale = np.sqrt(np.diag(sub))
    if not (np.isfinite(sub).all() and (scale > 0).all()):
        return None
    _, vecs = np.linalg.eigh(sub / np.outer(scale, scale))
    weight = np.abs(vecs[:, 0]) * candidates[idx]
    if not weight.max() > 0:
        return None
    return int(idx[int(np.argmax(weight))])


def conditional_covariance(
    bounds: _Bounds, fisher: np.ndarray, theta: np.ndarray, kinds: Sequence[ParamKind]
) -> tuple[np.ndarray, bool, np.ndarray]:
    """Covariance of ``[theta, fluxes]`` with unconstrained shape parameters held.

    Parameters
    ----------
    bounds : `lsst.galmix.fitting.optimize.ParameterBounds`
        Bounds of the nonlinear parameters (parameters at a bound are handled there).
    fisher : `numpy.ndarray`
        Fisher matrix of ``[theta, fluxes]`` (``theta`` rows first), priors included.
    theta : `numpy.ndarray`
        Best-fit nonlinear parameters.
    kinds : sequence of `lsst.galmix.engine.ParamKind`
        Their kinds (`lsst.galmix.models.definitions.ModelDef.nonlinear_kinds`).

    Returns
    -------
    cov : `numpy.ndarray`
        Covariance; rows of held and fixed parameters have NaN variances (also a flux or centroid
        without information, e.g. of a source of a joint fit whose model left the pixels). All NaN
        when the fluxes and centroids that have information still give a singular Fisher matrix.
    singular : `bool`
        Whether that happened.
    held : `numpy.ndarray`
        Boolean, per nonlinear parameter: held because unconstrained (or without information).
    """
    npar = len(theta)
    limits = _limits(kinds, bounds)
    shape = np.isfinite(limits)
    # Held parameters of every kind; only shape parameters are held for being loose, fluxes and
    # centroids only when they carry no information at all (their variances are then NaN).
    held = np.zeros(len(fisher), bool)
    if not np.isfinite(fisher).all():
        return np.full(fisher.shape, np.nan), True, held[:npar]
    at_bound = bounds.fixed_for_errors(theta)
    for _ in range(len(fisher) + 1):
        cov, singular = bounds.covariance(fisher, theta, held, at_bound)
        if singular:
            fixed = held.copy()
            fixed[:npar] |= at_bound
            candidates = np.zeros(len(fisher), bool)
            candidates[:npar] = shape & ~fixed[:npar]
            k = _weakest(fisher, fixed, candidates)
            if k is None:
                return cov, True, held[:npar]
            held[k] = True
            continue
        with np.errstate(invalid="ignore"):
            ratio = np.sqrt(cov.diagonal()[:npar]) / limits
        ratio = np.where(shape & ~held[:npar] & ~at_bound & np.isfinite(ratio), ratio, 0.0)
        if not ratio.max() > 1.0:
            return cov, False, held[:npar]
        held[int(np.argmax(ratio))] = True
    return cov, singular, held[:npar]


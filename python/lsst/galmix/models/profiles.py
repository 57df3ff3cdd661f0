"""Radial profiles of model components as normalised Gaussian mixtures in units of ``reff``.

A component of half-light radius ``reff`` is the mixture ``sum_k w_k N(0, (s_k reff)^2 E)`` with
``E = R(theta) diag(1, q^2) R(theta)^T``; this module returns ``(w, s)`` for each profile. Sersic
mixtures come from `lsst.galmix.models.sersic` (the tables derived by this project).
"""

from __future__ import annotations

import numpy as np

from .definitions import ComponentDef, ProfileKind

__all__ = ["GAUSS_SIZE", "profile_mixture"]

GAUSS_SIZE = 1.0 / float(np.sqrt(2.0 * np.log(2.0)))
"""Sigma of a Gaussian in units of its half-light radius."""


def profile_mixture(comp: ComponentDef, n: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weights and sizes (units of ``reff``) of a component's profile.

    Parameters
    ----------
    comp : `ComponentDef`
        The component.
    n : `float`, optional
        Sersic index when it is free (ignored otherwise).

    Returns
    -------
    w, s : `numpy.ndarray`
        Weights (sum 1) and sizes; a point source is one Gaussian of size 0.
    """
    if comp.profile == ProfileKind.POINT:
        return np.ones(1), np.zeros(1)
    if comp.profile == ProfileKind.GAUSS:
        return np.ones(1), np.full(1, GAUSS_SIZE)
    from . import sersic

    if comp.sersic_n in (1.0, 4.0):  # exponential and de Vaucouleurs: table nodes, no interpolation
        w, s = sersic.node_mixture(comp.sersic_n)
    else:
        index = comp.sersic_n if comp.sersic_n is not None else n
        if index is None:
            raise ValueError(f"component {comp.name} needs a Sersic index")
        w, s = sersic.sersic_mixture(float(index))[:2]
    return np.asarray(w, dtype=float), np.asarray(s, dtype=float)

"""Derive the Gaussian-mixture approximations of Sersic profiles shipped as package data.

Run ``python -m lsst.galmix.models.derive_sersic_mixtures`` to regenerate the tables in
``lsst/galmix/models/data`` (deterministic; a few seconds per K).

Objective
---------
For each Sersic index ``n`` on a grid of nodes, the weights ``w_k`` (softmax, so they are positive
and sum to 1) and sizes ``s_k`` (Gaussian sigma in units of ``reff``) of K circular Gaussians are fit
by least squares so that the mixture's enclosed-light profile
``L_mix(<r) = sum_k w_k (1 - exp(-r^2 / (2 s_k^2)))`` matches the exact Sersic
``L(<r) = P(2n, b_n r^(1/n))`` at radii spaced uniformly in ``ln r`` from ``R_MIN`` to ``R_MAX``
(40 ``reff``), with extra weight on the radii around ``reff``. Fitting the enclosed light over a wide range, rather than the surface brightness,
is what makes the PSF-convolved total flux and half-light radius come out right (see doc/sersic.rst).

The nodes are visited from the largest ``n`` downwards and each fit starts from the linear
extrapolation of its two neighbours' solutions. A weak penalty on the deviation from that
extrapolation (a curvature penalty on the tracks in ``x = ln n``) selects a smooth solution where the
problem is degenerate: towards ``n = 0.5`` the profile becomes one Gaussian and the weights and sizes
of the vanishing components are otherwise undetermined.
"""

from __future__ import annotations

__all__ = ["default_nodes", "derive_table", "fit_one", "main", "write_table"]

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
import scipy
from scipy.optimize import least_squares

from .sersic_profile import sersic_enclosed_fraction
from .sersic_table import DATA_DIR, MixtureTable, table_path

R_MIN = 1.0e-4
"""Smallest fitted radius, in ``reff`` (an n = 6 profile has 1e-5 of its light inside)."""
R_MAX = 40.0
"""Largest fitted radius, in ``reff``: small galaxies fill stamps of 20-35 ``reff``."""
N_RADII = 400
"""Number of fitted radii, uniform in ``ln r``."""
N_MIN, N_MAX = 0.5, 6.5
"""Range of the nodes. The margin above n = 6 keeps the spline end tame where the fitter's bound is.
There is none below n = 0.5: a Sersic profile with n < 0.5 is flatter than a Gaussian and no mixture
of Gaussians with positive weights represents it, so fits there degenerate to one Gaussian."""
CORE_WEIGHT, CORE_WIDTH = 3.0, 1.0
"""Residuals are weighted by ``1 + CORE_WEIGHT exp(-(ln r)^2 / (2 CORE_WIDTH^2))``: the light near
``reff`` sets the half-light radius of resolved galaxies, so it is fit more tightly than the cusp and
the tail (measured: 6x smaller half-light radius errors for K = 10 at the same flux accuracy)."""
SMOOTHNESS = 1.0e-8
"""Weight of the curvature penalty on the tracks (per unit ``ln n`` squared), relative to the
enclosed-light residuals: the residuals ``SMOOTHNESS / step^2 * (p - p_extrapolated)`` approximate
``SMOOTHNESS / 2 * d^2 p / d(ln n)^2``, independent of the node spacing."""


def default_nodes() -> np.ndarray:
    """Return the Sersic indices at which mixtures are fit.

    Returns
    -------
    n : `numpy.ndarray`
        Dense (step 0.005 in ``ln n``) below n = 0.8, where the mixture collapses towards one Gaussian
        and the tracks bend sharply, and step 0.025 in ``ln n`` above; the indices 0.5, 1, 4 and 6 of
        the fixed profiles and of the fitter's bounds are nodes exactly.
    """
    pieces = [
        np.exp(np.linspace(np.log(N_MIN), np.log(0.8), 95)),
        np.exp(np.linspace(np.log(0.8), np.log(1.0), 10)),
        np.exp(np.linspace(0.0, np.log(4.0), 56)),
        np.exp(np.linspace(np.log(4.0), np.log(6.0), 17)),
        np.exp(np.linspace(np.log(6.0), np.log(N_MAX), 5)),
    ]
    nodes = np.unique(np.round(np.concatenate(pieces), 12))
    for exact in (0.5, 1.0, 4.0, 6.0):
        nodes[np.argmin(np.abs(nodes - exact))] = exact
    return nodes


def _radii() -> np.ndarray:
    return np.exp(np.linspace(np.log(R_MIN), np.log(R_MAX), N_RADII))


def _radial_weights(r: np.ndarray) -> np.ndarray:
    return 1.0 + CORE_WEIGHT * np.exp(-0.5 * (np.log(r) / CORE_WIDTH) ** 2)


def _unpack(p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    logits = np.concatenate([[0.0], p[: k - 1]])
    w = np.exp(logits - logits.max())
    return w / w.sum(), np.exp(p[k - 1 :])


def _pack(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    logw = np.log(w)
    return np.concatenate([logw[1:] - logw[0], np.log(s)])


def _enclosed_light(p: np.ndarray, k: int, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mixture enclosed light at radii r and its Jacobian with respect to p."""
    w, s = _unpack(p, k)
    u = 0.5 * (r[:, None] / s[None, :]) ** 2
    e = np.exp(-u)
    g = 1.0 - e
    value = g @ w
    jac = np.empty((r.size, 2 * k - 1))
    # d w_j / d logit_m = w_j (delta_jm - w_m); logit_1 is fixed at 0.
    jac[:, : k - 1] = w[None, 1:] * (g[:, 1:] - value[:, None])
    jac[:, k - 1 :] = -2.0 * w[None, :] * u * e
    return value, jac


def fit_one(
    n: float,
    start: np.ndarray,
    target: np.ndarray | None = None,
    penalty: float = 0.0,
) -> tuple[np.ndarray, float, float]:
    """Fit one mixture to the enclosed light of the Sersic profile of index n.

    Parameters
    ----------
    n : float
        Sersic index.
    start : `numpy.ndarray`, shape (2K-1,)
        Starting parameters: K-1 log-weight ratios ``ln(w_k / w_1)`` then K values ``ln s_k``.
    target : `numpy.ndarray`, optional
        Parameters that the smoothness penalty pulls towards (default: no penalty).
    penalty : float
        Coefficient of the penalty residuals ``penalty * (p - target)``.

    Returns
    -------
    params : `numpy.ndarray`
        Best-fit parameters (same layout as ``start``).
    rms : float
        RMS enclosed-light residual (unweighted).
    max_abs : float
        Largest absolute enclosed-light residual (unweighted).
    """
    k = (start.size + 1) // 2
    r = _radii()
    exact = sersic_enclosed_fraction(r, n)
    weight = _radial_weights(r)

    def residuals(p: np.ndarray) -> np.ndarray:
        value, _ = _enclosed_light(p, k, r)
        res = weight * (value - exact)
        if target is not None:
            res = np.concatenate([res, penalty * (p - target)])
        return res

    def jacobian(p: np.ndarray) -> np.ndarray:
        jac = weight[:, None] * _enclosed_light(p, k, r)[1]
        if target is not None:
            jac = np.vstack([jac, penalty * np.eye(p.size)])
        return jac

    result = least_squares(
        residuals, start, jac=jacobian, method="lm", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000
    )
    diff = _enclosed_light(result.x, k, r)[0] - exact
    return result.x, float(np.sqrt(np.mean(diff**2))), float(np.max(np.abs(diff)))


def _global_start(n: float, k: int) -> np.ndarray:
    """Best of a few log-spaced starting guesses (deterministic) for the first node."""
    fits = [
        fit_one(n, _pack(np.full(k, 1.0 / k), np.exp(np.linspace(lo, hi, k))))
        for lo in (-6.0, -5.0, -4.0, -3.0)
        for hi in (1.0, 1.5, 2.0)
    ]
    return min(fits, key=lambda fit: fit[1])[0]


def derive_table(k: int, nodes: np.ndarray | None = None, smoothness: float = SMOOTHNESS) -> MixtureTable:
    """Fit K-Gaussian mixtures at all nodes by continuation from the largest n downwards.

    Parameters
    ----------
    k : int
        Number of Gaussians.
    nodes : `numpy.ndarray`, optional
        Sersic indices (default `default_nodes`).
    smoothness : float
        Coefficient of the curvature penalty (per unit ``ln n`` squared).

    Returns
    -------
    table : `MixtureTable`
        The fitted mixtures, sorted by increasing n.
    """
    nodes = default_nodes() if nodes is None else np.asarray(nodes, dtype=float)
    order = np.argsort(nodes)[::-1]
    x = np.log(nodes)
    params = np.empty((nodes.size, 2 * k - 1))
    rms = np.empty(nodes.size)
    max_abs = np.empty(nodes.size)
    done: list[int] = []
    for i in order:
        if not done:
            start = _global_start(nodes[i], k)
            target = None
        elif len(done) == 1:
            start = target = params[done[-1]]
        else:
            a, b = done[-1], done[-2]
            slope = (params[a] - params[b]) / (x[a] - x[b])
            start = target = params[a] + slope * (x[i] - x[a])
        step = abs(x[i] - x[done[-1]]) if done else 1.0
        params[i], rms[i], max_abs[i] = fit_one(nodes[i], start, target, smoothness / step**2)
        done.append(i)
    weights = np.empty((nodes.size, k))
    sizes = np.empty((nodes.size, k))
    for i in range(nodes.size):
        weights[i], sizes[i] = _unpack(params[i], k)
    # Continuation keeps the components' order along the tracks; present them by increasing size.
    perm = np.argsort(sizes[np.argmax(nodes)])
    ascending = np.argsort(nodes)
    return MixtureTable(
        n=nodes[ascending],
        weights=weights[ascending][:, perm],
        sizes=sizes[ascending][:, perm],
        rms=rms[ascending],
        max_abs=max_abs[ascending],
    )


def write_table(table: MixtureTable, path: Path, elapsed: float) -> None:
    """Write a table as ``.npz`` with provenance metadata.

    Parameters
    ----------
    table : `MixtureTable`
        Table to write.
    path : `pathlib.Path`
        Output file.
    elapsed : float
        Derivation time in seconds (recorded as provenance).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        n=table.n,
        weights=table.weights,
        sizes=table.sizes,
        rms=table.rms,
        max_abs=table.max_abs,
        n_components=np.int64(table.n_components),
        objective=np.str_(
            f"least squares of L_mix(<r) - L_sersic(<r) at {N_RADII} radii uniform in ln r, "
            f"{R_MIN:g} <= r/reff <= {R_MAX:g}, weight 1 + {CORE_WEIGHT:g} exp(-(ln r)^2 / "
            f"(2 * {CORE_WIDTH:g}^2)); continuation from high n with penalty residuals "
            f"{SMOOTHNESS:g} / step(ln n)^2 * (p - linear extrapolation of the previous two nodes)"
        ),
        generator=np.str_("python -m lsst.galmix.models.derive_sersic_mixtures"),
        scipy_version=np.str_(scipy.__version__),
        numpy_version=np.str_(np.__version__),
        created=np.str_(datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        derivation_seconds=np.float64(elapsed),
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: derive and write tables for the requested K."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", type=int, nargs="+", default=[10, 12], help="numbers of Gaussians")
    parser.add_argument("--output-dir", type=Path, default=DATA_DIR, help="where to write the tables")
    args = parser.parse_args(argv)
    for k in args.k:
        t0 = time.perf_counter()
        table = derive_table(k)
        elapsed = time.perf_counter() - t0
        path = table_path(k, args.output_dir)
        write_table(table, path, elapsed)
        in_range = (table.n >= 0.5) & (table.n <= 6.0)
        print(
            f"K={k:2d}: {table.n.size} nodes in {elapsed:.1f} s; over 0.5 <= n <= 6 max |dL| = "
            f"{table.max_abs[in_range].max():.2e}, rms dL <= {table.rms[in_range].max():.2e} -> {path}"
        )


if __name__ == "__main__":
    main()

"""Storage of the Sersic Gaussian-mixture tables (package data written by ``derive_sersic_mixtures``).

File format: one ``.npz`` per number of Gaussians K, ``models/data/sersic_mixture_kKK.npz``, holding
``n`` (M,) Sersic indices of the nodes (increasing), ``weights`` (M, K) (sum 1 per node), ``sizes``
(M, K) (Gaussian sigma in units of ``reff``, increasing in k), ``rms`` and ``max_abs`` (M,) (the
enclosed-light residuals of each fit), ``n_components`` (K) and provenance strings ``objective``,
``generator``, ``created``, ``numpy_version``, ``scipy_version`` and ``derivation_seconds``.
"""

from __future__ import annotations

__all__ = ["DATA_DIR", "MixtureTable", "available_n_components", "read_table", "table_path"]

import dataclasses
import functools
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"


@dataclasses.dataclass(frozen=True)
class MixtureTable:
    """Gaussian-mixture approximations of Sersic profiles at a set of nodes in n.

    Attributes
    ----------
    n : `numpy.ndarray`, shape (M,)
        Sersic indices of the nodes, increasing.
    weights : `numpy.ndarray`, shape (M, K)
        Weights ``w_k`` (sum 1 at each node).
    sizes : `numpy.ndarray`, shape (M, K)
        Gaussian sigma ``s_k`` in units of ``reff``, increasing in k.
    rms : `numpy.ndarray`, shape (M,)
        RMS of ``L_mix(<r) - L(<r)`` over the fitted radii.
    max_abs : `numpy.ndarray`, shape (M,)
        Maximum of ``|L_mix(<r) - L(<r)|`` over the fitted radii.
    metadata : `dict` [`str`, `str`]
        Provenance (objective, generator, creation time, library versions).
    """

    n: np.ndarray
    weights: np.ndarray
    sizes: np.ndarray
    rms: np.ndarray
    max_abs: np.ndarray
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def n_components(self) -> int:
        """Number of Gaussians K."""
        return self.weights.shape[1]


def table_path(n_components: int, directory: Path = DATA_DIR) -> Path:
    """Return the path of the K-Gaussian table.

    Parameters
    ----------
    n_components : int
        Number of Gaussians K.
    directory : `pathlib.Path`
        Directory of the tables (default: the package data).

    Returns
    -------
    path : `pathlib.Path`
        ``directory / f"sersic_mixture_k{K:02d}.npz"``.
    """
    return directory / f"sersic_mixture_k{n_components:02d}.npz"


def available_n_components() -> list[int]:
    """Return the numbers of Gaussians for which package-data tables exist."""
    return sorted(int(p.stem[-2:]) for p in DATA_DIR.glob("sersic_mixture_k*.npz"))


@functools.cache
def read_table(n_components: int) -> MixtureTable:
    """Read the package-data table with K Gaussians (cached).

    Parameters
    ----------
    n_components : int
        Number of Gaussians K; see `available_n_components`.

    Returns
    -------
    table : `MixtureTable`
        The table (arrays are read-only).

    Raises
    ------
    FileNotFoundError
        If no table with that K is shipped.
    """
    path = table_path(n_components)
    if not path.exists():
        raise FileNotFoundError(
            f"No Sersic mixture table with K={n_components} (available: {available_n_components()}); "
            "run `python -m lsst.galmix.models.derive_sersic_mixtures -k K`."
        )
    with np.load(path) as data:
        arrays = {key: np.array(data[key]) for key in ("n", "weights", "sizes", "rms", "max_abs")}
        metadata = {key: str(data[key]) for key in data.files if key not in arrays and key != "n_components"}
        if int(data["n_components"]) != arrays["weights"].shape[1]:
            raise ValueError(f"{path}: n_components does not match the weights' shape")
    for value in arrays.values():
        value.setflags(write=False)
    return MixtureTable(metadata=metadata, **arrays)

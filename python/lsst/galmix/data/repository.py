"""Butler repository setup without obs/skymap packages: seed config, dimension records, dataset types.

The facts this relies on (measured, see DESIGN.md): ``band`` is a view of ``physical_filter``, so an
instrument with physical filters defines the bands; ``skymap`` needs ``hash``, ``tract_max``,
``patch_nx_max`` and ``patch_ny_max``; ``patch`` needs ``cell_x`` and ``cell_y`` and a region.
"""

from __future__ import annotations

__all__ = (
    "BANDS",
    "COADD_DATASET_TYPE",
    "INSTRUMENT",
    "RUN",
    "TRUTH_DATASET_TYPE",
    "RegistrySetupError",
    "check_bands",
    "create_butler_repo",
    "physical_filter_name",
    "register_dataset_types",
    "register_instrument",
    "register_skymap",
)

import importlib.resources
import os
import shutil

from lsst.daf.butler import Butler, Config, DatasetType
from lsst.resources import ResourcePath

from .skymap import TractGeometry

RUN = "galmix/sim"
INSTRUMENT = "GalmixSim"
BANDS = "ugrizy"
COADD_DATASET_TYPE = "deep_coadd_cell"
TRUTH_DATASET_TYPE = "truth_summary"


def physical_filter_name(band: str) -> str:
    """Return the physical filter of a band (``sim_<band>``).

    Parameters
    ----------
    band
        Band name, one of ``u g r i z y``.
    """
    return f"sim_{band}"


def check_bands(bands: str | list[str]) -> list[str]:
    """Validate a band selection and return it as a list in ``ugrizy`` order.

    Parameters
    ----------
    bands
        Band names, as a string (``"gri"``) or a list.

    Raises
    ------
    ValueError
        If a band is unknown, repeated, or none is given.
    """
    requested = list(bands)
    unknown = [b for b in requested if b not in BANDS]
    if unknown:
        raise ValueError(f"Unknown band(s) {''.join(unknown)!r}: galmix simulates only bands {BANDS!r}.")
    if len(set(requested)) != len(requested):
        raise ValueError(f"Band list {''.join(requested)!r} repeats a band.")
    if not requested:
        raise ValueError("At least one band is needed.")
    return [b for b in BANDS if b in requested]


def _seed_config() -> Config:
    with importlib.resources.as_file(
        importlib.resources.files("lsst.galmix").joinpath("config", "butler-seed.yaml")
    ) as path:
        return Config(str(path))


class RegistrySetupError(ValueError):
    """The registry database could not be set up; the message says why and what to do.

    A `ValueError`: the registry argument (URL, database, credentials) cannot be used as given.
    """


def _explain_registry_error(registry: str | None, exc: Exception) -> str:
    """A one-paragraph explanation of a failed registry set-up, naming the usual traps."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    hint = ""
    if registry is not None and registry.startswith("postgresql://"):
        hint = (
            "A PostgreSQL registry URL needs the driver: postgresql+psycopg2://USER@HOST:PORT/DATABASE "
            "(plain postgresql:// asks SQLAlchemy for psycopg 3, which galmix does not install)."
        )
    elif "btree_gist" in text:
        hint = "As a superuser, run 'CREATE EXTENSION btree_gist;' in that database, then retry."
    elif "DbAuth" in type(exc).__name__ or "permissions" in text:
        hint = (
            "The password comes from ~/.lsst/db-auth.yaml (or the file named by $LSST_DB_AUTH), which must "
            "have mode 600 and entries '- url: postgresql://HOST:PORT/DATABASE' (no driver) with "
            "'username' and 'password'."
        )
    elif "password" in text:
        hint = (
            "No password matched: add an entry for this URL, written postgresql://HOST:PORT/DATABASE "
            "without the driver, to ~/.lsst/db-auth.yaml (or $LSST_DB_AUTH), mode 600."
        )
    where = registry if registry is not None else "SQLite in the repository"
    return f"registry set-up failed for {where}: {text}" + (f"\n{hint}" if hint else "")


def _remove_made(local: str | None, created_dir: bool, before: set[str]) -> None:
    """Remove what a failed `create_butler_repo` wrote: the folder if it made it, else its new files."""
    if local is None or not os.path.isdir(local):
        return
    if created_dir:
        shutil.rmtree(local, ignore_errors=True)
        return
    for name in set(os.listdir(local)) - before:
        path = os.path.join(local, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def create_butler_repo(
    root: str, registry: str | None = None, namespace: str | None = None, formatters: dict | None = None
) -> Butler:
    """Create an empty Butler repository from the galmix seed config and return a writeable Butler.

    Parameters
    ----------
    root
        Repository root directory; it must not exist yet, or be an empty directory.
    registry
        Registry database URL; `None` for SQLite inside the repository. A PostgreSQL URL
        (``postgresql+psycopg2://...``) needs the ``btree_gist`` extension in that database.
    namespace
        Registry schema namespace for a shared database (PostgreSQL); ignored for SQLite.
    formatters
        Entries merged into the datastore's ``formatters`` configuration (e.g. the uncompressed
        coadds of the simulated repositories, `lsst.galmix.sim.make_repo.coadd_formatters`).

    Raises
    ------
    FileExistsError
        If ``root`` exists and is not an empty directory.
    RegistrySetupError
        If the registry cannot be created or opened (missing driver or ``btree_gist``, no password in
        ``db-auth.yaml``...). What this call wrote is removed first, so the same command can be re-run.
    """
    path = ResourcePath(root, forceDirectory=True)
    local = path.ospath if path.isLocal else None
    if local is not None and os.path.exists(local) and (not os.path.isdir(local) or os.listdir(local)):
        raise FileExistsError(f"Repository path {root!r} already exists and is not empty; choose a new one.")
    created_dir = local is not None and not os.path.exists(local)
    before = set(os.listdir(local)) if local is not None and not created_dir else set()
    config = _seed_config()
    if registry is not None:
        config["registry", "db"] = registry
        if namespace is not None:
            config["registry", "namespace"] = namespace
    if formatters:
        config["datastore", "formatters"] = Config(formatters)
    try:
        # makeRepo would replace an explicit SQLite URL by the in-repository default unless told not to.
        Butler.makeRepo(path, config=config, forceConfigRoot=registry is None)
        return Butler.from_config(str(path), writeable=True)
    except Exception as exc:  # any failure here leaves a butler.yaml that blocks a re-run
        _remove_made(local, created_dir, before)
        raise RegistrySetupError(_explain_registry_error(registry, exc)) from exc


def register_instrument(butler: Butler, bands: list[str]) -> None:
    """Insert the ``GalmixSim`` instrument and one physical filter per band.

    Parameters
    ----------
    butler
        Writeable Butler.
    bands
        Bands to define (validated by `check_bands`).
    """
    butler.registry.insertDimensionData(
        "instrument",
        {
            "name": INSTRUMENT,
            "visit_max": 1,
            "exposure_max": 1,
            "detector_max": 1,
            "class_name": "lsst.galmix.sim.GalmixSim",
        },
    )
    butler.registry.insertDimensionData(
        "physical_filter",
        *[{"instrument": INSTRUMENT, "name": physical_filter_name(b), "band": b} for b in check_bands(bands)],
    )


def register_skymap(butler: Butler, geometry: TractGeometry) -> None:
    """Insert the skymap, its tract and its patches (with sphgeom regions).

    Parameters
    ----------
    butler
        Writeable Butler.
    geometry
        Tract geometry; its ``skymap`` name is the skymap record name.
    """
    butler.registry.insertDimensionData(
        "skymap",
        {
            "name": geometry.skymap,
            "hash": geometry.hash,
            "tract_max": geometry.tract + 1,
            "patch_nx_max": geometry.size.n_patches_x,
            "patch_ny_max": geometry.size.n_patches_y,
        },
    )
    butler.registry.insertDimensionData(
        "tract", {"skymap": geometry.skymap, "id": geometry.tract, "region": geometry.region}
    )
    patches = []
    for patch in geometry.patch_ids():
        index = geometry.patch_index(patch)
        patches.append(
            {
                "skymap": geometry.skymap,
                "tract": geometry.tract,
                "id": patch,
                "cell_x": index.x,
                "cell_y": index.y,
                "region": geometry.patch_region(patch),
            }
        )
    butler.registry.insertDimensionData("patch", *patches)


def register_dataset_types(butler: Butler) -> dict[str, DatasetType]:
    """Register the dataset types the simulated repository writes.

    Parameters
    ----------
    butler
        Writeable Butler.

    Returns
    -------
    dataset_types : `dict` [`str`, `lsst.daf.butler.DatasetType`]
        ``deep_coadd_cell`` (CellCoadd; tract, patch, band) and ``truth_summary`` (ArrowAstropy; tract).
    """
    universe = butler.dimensions
    dataset_types = {
        COADD_DATASET_TYPE: DatasetType(
            COADD_DATASET_TYPE, universe.conform(["skymap", "tract", "patch", "band"]), "CellCoadd"
        ),
        TRUTH_DATASET_TYPE: DatasetType(
            TRUTH_DATASET_TYPE, universe.conform(["skymap", "tract"]), "ArrowAstropy"
        ),
    }
    for dataset_type in dataset_types.values():
        butler.registry.registerDatasetType(dataset_type)
    return dataset_types

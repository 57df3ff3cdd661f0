"""The registry of source models: the one place that declares each model.

The fitter, the output schema and the PipelineTasks all read these definitions. A model is one or more
components sharing a centroid; each component has a radial profile and, unless it is a point source,
its own shape (``ln reff``, ``eta1``, ``eta2``) shared across bands, and one linear flux per band.

Column naming (see doc/conventions.rst): single-component models report ``<model>_reff`` etc.;
two-component models prefix component quantities with the component name (``expdev_exp_reff``,
``<band>_expdev_expFlux``) and also report the total flux ``<band>_expdevFlux``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from ..engine import ParamKind

__all__ = [
    "MODELS",
    "N_MAX",
    "N_MIN",
    "ComponentDef",
    "ModelDef",
    "ProfileKind",
    "get_model",
    "model_names",
]

N_MIN = 0.5
"""Default lower bound of the Sersic index."""
N_MAX = 6.0
"""Default upper bound of the Sersic index."""


class ProfileKind(str, Enum):
    """Kind of radial profile of a component (the engine's `lsst.galmix.engine.Profile` is the profile itself)."""

    POINT = "point"
    """Unresolved: the PSF itself."""
    GAUSS = "gauss"
    """A single elliptical Gaussian."""
    SERSIC = "sersic"
    """A Sersic profile approximated by a Gaussian mixture (fixed or free index)."""


@dataclass(frozen=True)
class ComponentDef:
    """One component of a source model.

    Parameters
    ----------
    name : `str`
        Component name used in column prefixes of multi-component models (``exp``, ``dev``...).
    profile : `ProfileKind`
        Radial profile.
    sersic_n : `float` or `None`
        Fixed Sersic index (1 for exponential, 4 for de Vaucouleurs); `None` with
        ``profile == SERSIC`` means the index is a free parameter.
    """

    name: str
    profile: ProfileKind
    sersic_n: float | None = None

    @property
    def has_shape(self) -> bool:
        """Whether the component has ``ln reff, eta1, eta2`` parameters."""
        return self.profile != ProfileKind.POINT

    @property
    def free_n(self) -> bool:
        """Whether the Sersic index is a free parameter."""
        return self.profile == ProfileKind.SERSIC and self.sersic_n is None

    @property
    def nonlinear_names(self) -> tuple[str, ...]:
        """Names of this component's nonlinear parameters in fitter order."""
        names: tuple[str, ...] = ("ln_reff", "eta1", "eta2") if self.has_shape else ()
        return names + (("n",) if self.free_n else ())

    @property
    def nonlinear_kinds(self) -> tuple[ParamKind, ...]:
        """The engine's kind of each of this component's nonlinear parameters, in fitter order."""
        kinds: tuple[ParamKind, ...] = (
            (ParamKind.LN_REFF, ParamKind.ETA1, ParamKind.ETA2) if self.has_shape else ())
        return kinds + ((ParamKind.SERSIC_N,) if self.free_n else ())


@dataclass(frozen=True)
class ModelDef:
    """A source model: components sharing one centroid.

    Parameters
    ----------
    name : `str`
        Model name, the column prefix (``sersic``, ``expdev``, ``sersicFixedCen``...).
    components : `tuple` [`ComponentDef`]
        The components.
    free_centroid : `bool`
        Whether the centroid is fitted (otherwise it is held at the input position).
    description : `str`
        One line for documentation and table metadata.
    """

    name: str
    components: tuple[ComponentDef, ...]
    free_centroid: bool
    description: str

    @property
    def multi(self) -> bool:
        """Whether the model has several components (column names then carry component names)."""
        return len(self.components) > 1

    @cached_property
    def nonlinear_names(self) -> tuple[str, ...]:
        """Names of all nonlinear parameters in fitter order: ``x, y`` then per component."""
        names: list[str] = ["x", "y"] if self.free_centroid else []
        for comp in self.components:
            names += [f"{comp.name}.{p}" for p in comp.nonlinear_names]
        return tuple(names)

    @cached_property
    def nonlinear_kinds(self) -> tuple[ParamKind, ...]:
        """The engine's kind of each nonlinear parameter (`lsst.galmix.engine.ParamKind`), in the order
        of `nonlinear_names`: the engine's parameters of one source without its fluxes, and without its
        centre when the centre is fixed."""
        kinds: list[ParamKind] = [ParamKind.X, ParamKind.Y] if self.free_centroid else []
        for comp in self.components:
            kinds += comp.nonlinear_kinds
        return tuple(kinds)

    @cached_property
    def reff_positions(self) -> tuple[int, ...]:
        """Positions of the ``ln reff`` parameters in `nonlinear_kinds` (one per extended component; kept:
        the checks of every fit read them)."""
        return tuple(k for k, kind in enumerate(self.nonlinear_kinds) if kind == ParamKind.LN_REFF)

    @cached_property
    def n_nonlinear(self) -> int:
        """Number of nonlinear parameters."""
        return len(self.nonlinear_names)

    @property
    def has_shape(self) -> bool:
        """Whether any component is extended."""
        return any(c.has_shape for c in self.components)


def _with_fixed_centroid_variant(name: str, comps: tuple[ComponentDef, ...], desc: str) -> list[ModelDef]:
    return [
        ModelDef(name, comps, True, desc),
        ModelDef(f"{name}FixedCen", comps, False, desc + " (centroid fixed at the input position)"),
    ]


_POINT = ComponentDef("pt", ProfileKind.POINT)
_GAUSS = ComponentDef("gauss", ProfileKind.GAUSS)
_EXP = ComponentDef("exp", ProfileKind.SERSIC, 1.0)
_DEV = ComponentDef("dev", ProfileKind.SERSIC, 4.0)
_SERSIC = ComponentDef("sersic", ProfileKind.SERSIC, None)

MODELS: dict[str, ModelDef] = {
    m.name: m
    for m in (
        _with_fixed_centroid_variant("point", (_POINT,), "Point source (the PSF)")
        + _with_fixed_centroid_variant("gauss", (_GAUSS,), "Elliptical Gaussian")
        + _with_fixed_centroid_variant("exp", (_EXP,), "Exponential (Sersic n = 1)")
        + _with_fixed_centroid_variant("dev", (_DEV,), "de Vaucouleurs (Sersic n = 4)")
        + _with_fixed_centroid_variant("sersic", (_SERSIC,), "Sersic with free index")
        + _with_fixed_centroid_variant("expdev", (_EXP, _DEV), "Exponential + de Vaucouleurs sharing a centre")
        + _with_fixed_centroid_variant("ptsersic", (_POINT, _SERSIC), "Point source + Sersic sharing a centre")
        + _with_fixed_centroid_variant("sersicexp", (_SERSIC, _EXP), "Sersic + exponential sharing a centre (bulge + disk with free "
                 "bulge index)")
    )
}
"""All models by name; ``<name>FixedCen`` variants hold the centroid fixed."""


def get_model(name: str) -> ModelDef:
    """Return the definition of a model.

    Parameters
    ----------
    name : `str`
        Model name (a key of `MODELS`).

    Returns
    -------
    model : `ModelDef`
        The definition.

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the known names.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"Unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def model_names() -> list[str]:
    """Names of all registered models."""
    return list(MODELS)

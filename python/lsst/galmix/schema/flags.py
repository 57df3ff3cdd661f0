"""The one registry of failure modes: detection, PSF fits and source fits.

Every flag is a `FlagDef` whose ``name`` is a snake_case reason; `lsst.galmix.schema.columns` turns it
into a boolean column with one pattern, ``<prefix>_<reason>_flag`` (Rubin's Object-table pattern):

- source fits (`SOURCE_FLAGS`): prefix the model name (``sersic_no_data_flag``); ``column`` replaces the
  reason where Rubin has a name for the same failure (``exception`` -> ``sersic_unknown_flag``). The
  summary column ``<model>_flag`` is set when any flag marked ``fatal`` is set (the fit values are then
  not to be trusted); non-fatal flags mark degraded but usable fits.
- PSF fits (`PSF_FLAGS`): prefix ``psf`` (``psf_no_data_flag``), summary ``psf_flag``.
- detection (`DETECTION_FLAGS`): prefix ``detect`` (``detect_edge_flag``), no summary column.

The fitting library carries source and PSF flags as integer bit masks (`FlagSet`); the order of a
registry fixes the bit of each name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DETECTION_FLAGS",
    "PSF_FLAGS",
    "REGISTRY",
    "SOURCE_FLAGS",
    "FlagDef",
    "FlagSet",
    "flag_bit",
    "flag_names",
]


@dataclass(frozen=True)
class FlagDef:
    """A named failure mode.

    Parameters
    ----------
    name : `str`
        The reason, snake_case (``no_data`` -> column ``<prefix>_no_data_flag``).
    description : `str`
        Column description.
    fatal : `bool`
        Whether the flag sets the summary flag (source and PSF fits).
    column : `str` or `None`
        Reason in the column name when it differs from ``name`` (Rubin's name for the same failure).
    """

    name: str
    description: str
    fatal: bool = True
    column: str | None = None


SOURCE_FLAGS: tuple[FlagDef, ...] = (
    FlagDef("exception", "An unexpected error occurred while fitting this object (see the log)",
            column="unknown"),
    FlagDef("no_data", "No usable band: no pixel with non-zero weight (masked, off the image) or no PSF"),
    FlagDef("nan_pixels", "Some pixels had non-finite values and were given zero weight", fatal=False),
    FlagDef("bad_variance", "Some pixels had zero, negative or non-finite variance (zero weight)", fatal=False),
    FlagDef("masked_pixels", "Some pixels of the footprint were masked (zero weight)", fatal=False),
    FlagDef("edge", "The stamp was truncated by the image edge", fatal=False),
    FlagDef("missing_band", "At least one band had no usable data or PSF; its fluxes are NaN", fatal=False),
    FlagDef("bad_psf", "The PSF of at least one band could not be obtained or fitted; that band's fluxes are NaN",
            fatal=False),
    FlagDef("bad_init", "No valid initial guess (moments failed); the fit started from a default", fatal=False),
    FlagDef("no_convergence", "The optimizer reached its iteration limit without converging"),
    FlagDef("param_at_bound", "The Sersic index or reff ended at a bound of its allowed range (except for n at"
            " its upper bound, its error is NaN and the other errors are conditional on it)", fatal=False),
    FlagDef("singular_fisher", "Some flux has no finite error: the Fisher matrix is singular even with the "
            "unconstrained shape parameters held, or the source has no information (its model left the "
            "pixels of a joint fit)"),
    FlagDef("too_many_children", "The blend has more children than the joint fit allows; fitted per child",
            fatal=False),
    FlagDef("zero_flux", "The best-fit total flux summed over the bands is not positive (fluxes are "
            "unconstrained: a source below the noise)", fatal=False),
    FlagDef("bad_fit", "The fit diverged (centre off its pixels, size > 10x the stamp) or gave non-finite values"),
    FlagDef("bad_size", "An extended component's reff collapsed below 1e-3 pixel (a tenth of the default lower "
            "bound): no data can measure such a size, it only arises from a numerical breakdown"),
    FlagDef("bad_flux", "In some band the fitted total flux exceeds 100x the fitted pixels' data flux (plus 5 sigma "
            "of its noise): over 99% of the model light would lie off the data, an extrapolation"),
    # Wrong answers a converged fit can report (lsst.galmix.fitting.plausibility).
    FlagDef("bad_position", "The catalogue position is not finite, or beyond the largest pixel coordinate "
            "an object can be placed at (lsst.galmix.fitting.plan.MAX_POSITION): it cannot be fitted"),
    FlagDef("centroid_moved", "The fitted centre left the object: it moved beyond max(3 px, 2 observed sigma) "
            "from the detection, or onto another catalogue object"),
    FlagDef("flux_excess", "In some band the fitted flux exceeds 10x the data flux of the object's own footprint "
            "(or aperture) plus 10 sigma: the fit took light that is not the object's"),
    FlagDef("shape_collapsed", "The data resolve the object but an extended component's axis ratio collapsed "
            "below 1e-3 or its reff to the lower bound (a line or a point, not this galaxy)"),
    FlagDef("shape_unconstrained", "A shape parameter (size, ellipticity or index) is not constrained by the "
            "data (point-like or barely resolved object): its error is NaN and the other errors are "
            "conditional on it", fatal=False),
    FlagDef("flat_shape", "A resolved (reff >= 1 pixel) extended component's axis ratio fell below 0.01: its shape "
            "is not measured (the flux may still be)", fatal=False),
)
"""Source-fit failure modes in bit order."""

PSF_FLAGS: tuple[FlagDef, ...] = (
    FlagDef("exception", "An unexpected error occurred while fitting the PSF image"),
    FlagDef("no_data", "The PSF kernel image is missing, empty or non-finite"),
    FlagDef("no_convergence", "The optimizer reached its iteration limit without converging"),
    FlagDef("bad_fit", "The mixture is degenerate (non-positive size or weight) or the fit diverged"),
    FlagDef("large_chi2", "The residual power of the mixture fit exceeds 0.25% of the kernel's",
            fatal=False),
)
"""PSF-fit failure modes in bit order."""

DETECTION_FLAGS: tuple[FlagDef, ...] = (
    FlagDef("edge", "Footprint touches the EDGE mask or the patch's outer boundary."),
    FlagDef("no_data", "Footprint touches NO_DATA pixels."),
    FlagDef("saturated_center", "A SAT pixel lies within 1 pixel of the centre in some band."),
    FlagDef("bad_center", "A BAD pixel lies within 1 pixel of the centre in some band."),
    FlagDef("moments_failed", "Adaptive moments failed; shape and centroid are the footprint's moments."),
)
"""Detection failure modes (columns of ``galmix_objects``)."""

REGISTRY: dict[str, tuple[FlagDef, ...]] = {
    "source": SOURCE_FLAGS,
    "psf": PSF_FLAGS,
    "detection": DETECTION_FLAGS,
}
"""Every registry by the step that sets its flags."""

_BITS = {f.name: i for i, f in enumerate(SOURCE_FLAGS)}
_PSF_BITS = {f.name: i for i, f in enumerate(PSF_FLAGS)}


def flag_bit(name: str, psf: bool = False) -> int:
    """Bit value (``1 << index``) of a named flag.

    Parameters
    ----------
    name : `str`
        Flag name.
    psf : `bool`
        Look the name up in `PSF_FLAGS` instead of `SOURCE_FLAGS`.
    """
    return 1 << (_PSF_BITS if psf else _BITS)[name]


_FATAL = sum(flag_bit(f.name) for f in SOURCE_FLAGS if f.fatal)
_PSF_FATAL = sum(flag_bit(f.name, True) for f in PSF_FLAGS if f.fatal)


def flag_names(psf: bool = False) -> list[str]:
    """Names of all flags in bit order."""
    return [f.name for f in (PSF_FLAGS if psf else SOURCE_FLAGS)]


class FlagSet:
    """A mutable set of named flags stored as a bit mask.

    Parameters
    ----------
    psf : `bool`
        Use the PSF registry.
    """

    def __init__(self, psf: bool = False, mask: int = 0) -> None:
        self.psf = psf
        self.mask = int(mask)

    def set(self, name: str, value: bool = True) -> None:
        """Set (or clear) a flag by name."""
        bit = flag_bit(name, self.psf)
        self.mask = (self.mask | bit) if value else (self.mask & ~bit)

    def __contains__(self, name: str) -> bool:
        return bool(self.mask & flag_bit(name, self.psf))

    def names(self) -> list[str]:
        """Names of the set flags."""
        return [n for n in flag_names(self.psf) if n in self]

    @property
    def fatal(self) -> bool:
        """Whether any fatal flag is set."""
        return bool(self.mask & (_PSF_FATAL if self.psf else _FATAL))

    def __repr__(self) -> str:
        return f"FlagSet({self.names()})"

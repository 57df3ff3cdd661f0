"""A PSF represented as a normalised mixture of 2-D Gaussians (pixel units, pixel response included)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

__all__ = ["FWHM_PER_SIGMA", "PsfMixture"]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
"""Full width at half maximum of a Gaussian per unit sigma."""

_T = TypeVar("_T")


@dataclass
class PsfMixture:
    """Gaussian mixture of a PSF (fractions of the PSF's total light).

    The values the fits derive from a mixture (`covariance`, `engine_array`, `is_valid`, any `derived`
    value) are computed once and kept: a patch fit asks for them per object and stage. Assigning any
    attribute drops them; the arrays themselves are treated as immutable (replace an array, do not write
    into it).

    Attributes
    ----------
    frac : `numpy.ndarray`
        Flux fractions of the PSF's light. Fitted mixtures keep the least-squares amplitudes, whose sum is
        the fraction of the kernel's light the mixture holds (slightly below 1): source models are
        ``F * mixture`` without renormalisation, which makes sky-limited fluxes unbiased
        (doc/conventions.rst, "PSF and pixel integration").
    dx, dy : `numpy.ndarray`
        Offsets of the Gaussian centres from the kernel centre (pixels).
    xx, yy, xy : `numpy.ndarray`
        Covariances (pixel^2).
    """

    frac: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    xx: np.ndarray
    yy: np.ndarray
    xy: np.ndarray
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # A new array invalidates what was derived from the old ones.
        object.__setattr__(self, name, value)
        if name != "_derived" and self.__dict__.get("_derived"):
            object.__setattr__(self, "_derived", {})

    def __post_init__(self) -> None:
        for name in ("frac", "dx", "dy", "xx", "yy", "xy"):
            setattr(self, name, np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64)))

    @property
    def n_gauss(self) -> int:
        """Number of Gaussians."""
        return len(self.frac)

    @classmethod
    def gaussian(cls, sigma: float) -> PsfMixture:
        """A single circular Gaussian of standard deviation ``sigma`` (pixels)."""
        return cls([1.0], [0.0], [0.0], [sigma**2], [sigma**2], [0.0])

    def covariance(self) -> np.ndarray:
        """Total 2x2 covariance of the mixture about its centroid (pixel^2; read-only, kept)."""
        cov = self._derived.get("covariance")
        if cov is None:
            cov = self._derived["covariance"] = _read_only(self._covariance())
        return cov

    def engine_array(self) -> np.ndarray:
        """The engine's ``(M, 6)`` layout ``(frac, dx, dy, xx, xy, yy)`` (read-only, kept)."""
        arr = self._derived.get("engine_array")
        if arr is None:
            arr = self._derived["engine_array"] = _read_only(
                np.column_stack([self.frac, self.dx, self.dy, self.xx, self.xy, self.yy]))
        return arr

    def derived(self, name: str, compute: Callable[[PsfMixture], _T]) -> _T:
        """``compute(self)``, computed once under ``name`` and kept until an attribute is assigned."""
        if name in self._derived:
            return self._derived[name]
        value = self._derived[name] = compute(self)
        return value

    def _covariance(self) -> np.ndarray:
        f = self.frac / self.frac.sum()
        mx, my = (f * self.dx).sum(), (f * self.dy).sum()
        cxx = (f * (self.xx + (self.dx - mx) ** 2)).sum()
        cyy = (f * (self.yy + (self.dy - my) ** 2)).sum()
        cxy = (f * (self.xy + (self.dx - mx) * (self.dy - my))).sum()
        return np.array([[cxx, cxy], [cxy, cyy]])

    def is_valid(self) -> bool:
        """Whether all values are finite, the covariances positive definite and the fractions sum to
        0.5-1.5 (a mixture holds roughly all of the PSF's light; not necessarily exactly 1; kept)."""
        return self.derived("is_valid", PsfMixture._is_valid)

    def _is_valid(self) -> bool:
        arr = np.concatenate([self.frac, self.dx, self.dy, self.xx, self.yy, self.xy])
        det = self.xx * self.yy - self.xy**2
        return bool(np.isfinite(arr).all() and (self.xx > 0).all() and (det > 0).all()
                    and 0.5 < self.frac.sum() < 1.5)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a

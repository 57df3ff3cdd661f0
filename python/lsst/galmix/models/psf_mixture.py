"""A PSF represented as a normalised mixture of 2-D Gaussians (pixel units, pixel response included)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PsfMixture"]


@dataclass
class PsfMixture:
    """Gaussian mixture of a PSF (fractions of the PSF's total light).

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
        """Total 2x2 covariance of the mixture about its centroid (pixel^2)."""
        f = self.frac / self.frac.sum()
        mx, my = (f * self.dx).sum(), (f * self.dy).sum()
        cxx = (f * (self.xx + (self.dx - mx) ** 2)).sum()
        cyy = (f * (self.yy + (self.dy - my) ** 2)).sum()
        cxy = (f * (self.xy + (self.dx - mx) * (self.dy - my))).sum()
        return np.array([[cxx, cxy], [cxy, cyy]])

    def is_valid(self) -> bool:
        """Whether all values are finite, the covariances positive definite and the fractions sum to
        0.5-1.5 (a mixture holds roughly all of the PSF's light; not necessarily exactly 1)."""
        arr = np.concatenate([self.frac, self.dx, self.dy, self.xx, self.yy, self.xy])
        det = self.xx * self.yy - self.xy**2
        return bool(np.isfinite(arr).all() and (self.xx > 0).all() and (det > 0).all()
                    and 0.5 < self.frac.sum() < 1.5)
